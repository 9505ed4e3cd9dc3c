//! Batched generation with a KV cache.
//!
//! Each [`SeqState`] keeps its own compact KV cache and the tokens not yet
//! in it (a new user turn, the generation prompt, the last sampled token).
//! A call lays the batch out in one buffer per layer:
//!
//! ```text
//! [ pad | cache_i ]  [ pad | pending_i ]  [ generated … ]
//!   0 .. C_max         C_max .. C_max+N      C_max+N ..
//! ```
//!
//! prefills all pending tokens in one forward (padding masked out; RoPE
//! positions are explicit, so gaps cost nothing), then decodes one token
//! per row per step. Rows that finish are cut out of the buffers so the
//! rest decode at the batch size still running. At the end every row's
//! valid columns become its new compact cache: nothing is recomputed on
//! the next turn. Rows that start the same prompt (a GRPO group's rollouts
//! of one question) are prefilled once and their keys/values copied.

use super::image::ProcessedImage;
use super::layers::Mode;
use super::qwen::{QwenVl, VisionInput};
use super::rope::{positions_tensor, rope_positions};
use super::sampling::{Sampling, pick};
use super::text::AttnMask;
use anyhow::{Result, ensure};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

/// A sequence as the generator sees it.
#[derive(Default)]
pub struct SeqState {
    /// Per layer (k, v), each (kv_heads, cached, head_dim).
    cache: Vec<(Tensor, Tensor)>,
    cached: usize,
    pending: Vec<i64>,
    pending_pos: Vec<[i64; 3]>,
    pending_images: Vec<ProcessedImage>,
    next_pos: i64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct GenParams {
    pub sampling: Sampling,
    pub max_new_tokens: usize,
    /// Tokens that end a turn (kept in the output): generation_config's
    /// `eos_token_id` list.
    pub stop: Vec<i64>,
    /// Prefill rows that start the same prompt once (off: every row is
    /// computed, as a throughput benchmark wants).
    pub share_prefill: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Generated {
    pub ids: Vec<i64>,
    pub logprobs: Vec<f32>,
    pub stopped: bool,
}

/// Throughput counters of one call.
#[derive(Clone, Debug, Default)]
pub struct GenStats {
    /// Prompt tokens computed.
    pub prefill_tokens: usize,
    /// Prompt tokens copied from a row with the same prompt instead.
    pub prefill_shared: usize,
    pub prefill_secs: f64,
    pub decode_tokens: usize,
    pub decode_secs: f64,
    /// Times a continuous decode rebuilt its buffers to admit rows.
    pub kv_rebuilds: usize,
}

impl SeqState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends tokens (image tokens expanded) with the images they show.
    pub fn push(
        &mut self,
        tokens: &[i64],
        images: Vec<ProcessedImage>,
        model: &QwenVl,
    ) -> Result<()> {
        let merge = model.cfg.vision.spatial_merge_size as i64;
        let grids: Vec<[i64; 3]> = images
            .iter()
            .map(|im| {
                [
                    im.grid_thw[0],
                    im.grid_thw[1] / merge,
                    im.grid_thw[2] / merge,
                ]
            })
            .collect();
        let (pos, next) = rope_positions(tokens, model.cfg.image_token_id, &grids, self.next_pos)?;
        self.pending.extend_from_slice(tokens);
        self.pending_pos.extend(pos);
        self.pending_images.extend(images);
        self.next_pos = next;
        Ok(())
    }

    /// Tokens in the cache plus those waiting.
    pub fn len(&self) -> usize {
        self.cached + self.pending.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn cached_len(&self) -> usize {
        self.cached
    }

    pub fn pending(&self) -> &[i64] {
        &self.pending
    }

    /// Frees the cache once a continuous decode holds a copy of it.
    pub(super) fn drop_cache(&mut self) {
        self.cache.clear();
    }

    /// The position the next token gets (text resumes here).
    pub fn next_pos(&self) -> i64 {
        self.next_pos
    }
}

struct Row {
    seq: usize,
    cached: i64,
    pending: i64,
    fed: i64,
    pos: i64,
    out: Generated,
    rng: ChaCha8Rng,
}

/// A row taken out of the batch: its output and its new compact cache.
pub(super) struct Finished {
    pub out: Generated,
    pub cache: Vec<(Tensor, Tensor)>,
    pub cached: usize,
    /// The position of the last sampled token, which is not fed yet.
    pub last_pos: i64,
}

pub(super) fn row_seed(seed: u64, k: usize) -> u64 {
    seed ^ (k as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Generates one continuation per sequence, all batched together.
pub fn generate(
    model: &QwenVl,
    seqs: &mut [&mut SeqState],
    params: &GenParams,
    seed: u64,
    mode: Mode,
    stats: &mut GenStats,
) -> Result<Vec<Generated>> {
    generate_streaming(model, seqs, params, seed, mode, stats, &mut |_, _| {})
}

/// As [`generate`], and hands each row to `on_done` (its index in `seqs`)
/// the step it finishes, while the others still decode: a rollout can start
/// that turn's search without waiting for the longest row.
pub fn generate_streaming(
    model: &QwenVl,
    seqs: &mut [&mut SeqState],
    params: &GenParams,
    seed: u64,
    mode: Mode,
    stats: &mut GenStats,
    on_done: &mut dyn FnMut(usize, &Generated),
) -> Result<Vec<Generated>> {
    let _no_grad = tch::no_grad_guard();
    let b = seqs.len();
    if params.max_new_tokens == 0 {
        let none = Generated {
            ids: Vec::new(),
            logprobs: Vec::new(),
            stopped: false,
        };
        for k in 0..b {
            on_done(k, &none);
        }
        return Ok(vec![none; b]);
    }
    if b == 0 {
        return Ok(Vec::new());
    }
    for (i, s) in seqs.iter().enumerate() {
        ensure!(
            !s.pending.is_empty(),
            "sequence {i} has nothing to continue from"
        );
    }
    let device = model.device();
    let layers = model.text.layers.len();
    let new = params.max_new_tokens as i64;
    let Prefilled {
        mut k_buf,
        mut v_buf,
        valid,
        layout: Layout { c_max, n, cap },
        mut logits,
    } = prefill_batch(model, seqs, new, params.share_prefill, mode, stats)?;
    let bi = b as i64;
    // Without gaps in the layout, decode steps need no mask at all.
    let gaps = seqs
        .iter()
        .any(|s| (s.cached as i64) < c_max || (s.pending.len() as i64) < n);

    let t1 = std::time::Instant::now();
    let mut valid_t = Tensor::from_slice(&valid).view([bi, cap]).to_device(device);
    let mut rows: Vec<Row> = seqs
        .iter()
        .enumerate()
        .map(|(k, s)| Row {
            seq: k,
            cached: s.cached as i64,
            pending: s.pending.len() as i64,
            fed: 0,
            pos: s.next_pos,
            out: Generated {
                ids: Vec::new(),
                logprobs: Vec::new(),
                stopped: false,
            },
            rng: ChaCha8Rng::seed_from_u64(row_seed(seed, k)),
        })
        .collect();
    let mut done: Vec<Option<Finished>> = (0..b).map(|_| None).collect();
    let mut col = c_max + n;
    let mut step = 0i64;
    while !rows.is_empty() {
        let uniform: Vec<f64> = rows.iter_mut().map(|r| r.rng.random::<f64>()).collect();
        let (toks, lps) = pick(&logits, &params.sampling, &uniform);
        step += 1;
        let mut finished = Vec::new();
        for (r, row) in rows.iter_mut().enumerate() {
            row.out.ids.push(toks[r]);
            row.out.logprobs.push(lps[r]);
            let stop = params.stop.contains(&toks[r]);
            row.out.stopped = stop;
            if stop || step >= new {
                finished.push(r);
            }
        }
        if !finished.is_empty() {
            // Take the finished rows' caches, then keep only the live rows.
            for &r in &finished {
                let row = &rows[r];
                let cols = row_columns(c_max, n, row);
                let idx = Tensor::from_slice(&cols).to_device(device);
                let cache = (0..layers)
                    .map(|l| {
                        (
                            k_buf[l].get(r as i64).index_select(1, &idx),
                            v_buf[l].get(r as i64).index_select(1, &idx),
                        )
                    })
                    .collect();
                let last_pos = row.pos + row.fed;
                on_done(row.seq, &row.out);
                done[row.seq] = Some(Finished {
                    out: row.out.clone(),
                    cache,
                    cached: cols.len(),
                    last_pos,
                });
            }
            let keep: Vec<i64> = (0..rows.len() as i64)
                .filter(|r| !finished.contains(&(*r as usize)))
                .collect();
            if keep.is_empty() {
                break;
            }
            let keep_t = Tensor::from_slice(&keep).to_device(device);
            for l in 0..layers {
                k_buf[l] = k_buf[l].index_select(0, &keep_t);
                v_buf[l] = v_buf[l].index_select(0, &keep_t);
            }
            valid_t = valid_t.index_select(0, &keep_t);
            let mut r = 0;
            rows.retain(|_| {
                let k = !finished.contains(&r);
                r += 1;
                k
            });
        }
        // Feed the last sampled token of every live row.
        let live = rows.len() as i64;
        let last: Vec<i64> = rows
            .iter()
            .map(|r| *r.out.ids.last().expect("sampled"))
            .collect();
        let pos: Vec<Vec<[i64; 3]>> = rows.iter().map(|r| vec![[r.pos + r.fed; 3]]).collect();
        let ids_t = Tensor::from_slice(&last).view([live, 1]).to_device(device);
        let _ = valid_t.narrow(1, col, 1).fill_(1);
        let mask = if gaps {
            AttnMask::Explicit(valid_t.narrow(1, 0, col + 1).view([live, 1, 1, col + 1]))
        } else {
            AttnMask::All
        };
        let embeds = model.text.embed_tokens(&ids_t);
        let h = model.decode(
            &embeds,
            &positions_tensor(&pos, 1, device),
            &mask,
            Some((&k_buf, &v_buf, col)),
            mode,
        );
        logits = model.text.logits(&h.squeeze_dim(1));
        for r in rows.iter_mut() {
            r.fed += 1;
        }
        stats.decode_tokens += live as usize;
        col += 1;
    }
    stats.decode_secs += t1.elapsed().as_secs_f64();

    let mut outs = Vec::with_capacity(b);
    for (k, s) in seqs.iter_mut().enumerate() {
        let fin = done[k].take().expect("every row finishes");
        outs.push(fin.settle(s));
    }
    Ok(outs)
}

impl Finished {
    /// Makes `s` continue from this row: its new compact cache, and the
    /// last sampled token (not fed yet) pending.
    pub(super) fn settle(self, s: &mut SeqState) -> Generated {
        let Finished {
            out,
            cache,
            cached,
            last_pos,
        } = self;
        s.cache = cache;
        s.cached = cached;
        s.pending.clear();
        s.pending_pos.clear();
        s.pending_images.clear();
        if let Some(&last) = out.ids.last() {
            s.pending.push(last);
            s.pending_pos.push([last_pos; 3]);
            s.next_pos = last_pos + 1;
        }
        out
    }
}

/// The batch buffers' shape: C_max cached columns, N pending, `cap` in all.
#[derive(Clone, Copy)]
pub(super) struct Layout {
    pub c_max: i64,
    pub n: i64,
    pub cap: i64,
}

/// A batch laid out and prefilled: per layer (k, v) buffers of
/// `[B, kv_heads, cap, head_dim]`, which columns of each row hold a token
/// (`[B × cap]`), and each row's next-token logits.
pub(super) struct Prefilled {
    pub k_buf: Vec<Tensor>,
    pub v_buf: Vec<Tensor>,
    pub valid: Vec<bool>,
    pub layout: Layout,
    pub logits: Tensor,
}

/// Lays `seqs` out (caches ending at C_max, pending tokens at C_max + N,
/// `extra` free columns after) and prefills their pending tokens in one
/// forward; with `share`, rows that start the same prompt (a GRPO group's n
/// rollouts of one question) are computed once and their keys/values copied.
pub(super) fn prefill_batch(
    model: &QwenVl,
    seqs: &[&mut SeqState],
    extra: i64,
    share: bool,
    mode: Mode,
    stats: &mut GenStats,
) -> Result<Prefilled> {
    let b = seqs.len();
    let device = model.device();
    let kind = model.kind();
    let layers = model.text.layers.len();
    let (kvh, hd) = (model.cfg.num_kv_heads() as i64, model.cfg.head_dim() as i64);
    let c_max = seqs.iter().map(|s| s.cached).max().unwrap_or(0) as i64;
    let n = seqs.iter().map(|s| s.pending.len()).max().unwrap_or(0) as i64;
    let cap = c_max + n + extra;
    let bi = b as i64;

    let mut k_buf: Vec<Tensor> = (0..layers)
        .map(|_| Tensor::zeros([bi, kvh, cap, hd], (kind, device)))
        .collect();
    let mut v_buf: Vec<Tensor> = (0..layers)
        .map(|_| Tensor::zeros([bi, kvh, cap, hd], (kind, device)))
        .collect();
    let mut valid = vec![false; b * cap as usize];
    for (i, s) in seqs.iter().enumerate() {
        let c = s.cached as i64;
        if c > 0 {
            for l in 0..layers {
                k_buf[l]
                    .get(i as i64)
                    .narrow(1, c_max - c, c)
                    .copy_(&s.cache[l].0);
                v_buf[l]
                    .get(i as i64)
                    .narrow(1, c_max - c, c)
                    .copy_(&s.cache[l].1);
            }
        }
        let row = &mut valid[i * cap as usize..(i + 1) * cap as usize];
        row[(c_max - c) as usize..c_max as usize].fill(true);
        let p = s.pending.len() as i64;
        row[(c_max + n - p) as usize..(c_max + n) as usize].fill(true);
    }

    let t0 = std::time::Instant::now();
    let layout = Layout { c_max, n, cap };
    let (reps, map) = if share {
        distinct_prompts(seqs)
    } else {
        ((0..b).collect(), (0..bi).collect())
    };
    let logits = if reps.len() == b {
        prefill(model, seqs, &reps, (&k_buf, &v_buf), &valid, layout, mode)?
    } else {
        let reps_t = Tensor::from_slice(&reps.iter().map(|&r| r as i64).collect::<Vec<_>>())
            .to_device(device);
        let map_t = Tensor::from_slice(&map).to_device(device);
        let k_sub: Vec<Tensor> = k_buf.iter().map(|t| t.index_select(0, &reps_t)).collect();
        let v_sub: Vec<Tensor> = v_buf.iter().map(|t| t.index_select(0, &reps_t)).collect();
        let logits = prefill(model, seqs, &reps, (&k_sub, &v_sub), &valid, layout, mode)?;
        for l in 0..layers {
            k_buf[l] = k_sub[l].index_select(0, &map_t);
            v_buf[l] = v_sub[l].index_select(0, &map_t);
        }
        logits.index_select(0, &map_t)
    };
    let computed: usize = reps.iter().map(|&r| seqs[r].pending.len()).sum();
    stats.prefill_tokens += computed;
    stats.prefill_shared += seqs.iter().map(|s| s.pending.len()).sum::<usize>() - computed;
    stats.prefill_secs += t0.elapsed().as_secs_f64();
    Ok(Prefilled {
        k_buf,
        v_buf,
        valid,
        layout,
        logits,
    })
}

/// One forward over the pending tokens of `rows` (of `seqs`), whose buffers
/// `kv` are, in that order: fills their pending columns and returns each
/// row's next-token logits.
fn prefill(
    model: &QwenVl,
    seqs: &[&mut SeqState],
    rows: &[usize],
    kv: (&[Tensor], &[Tensor]),
    valid: &[bool],
    Layout { c_max, n, cap }: Layout,
    mode: Mode,
) -> Result<Tensor> {
    let device = model.device();
    let b = rows.len();
    let pad = if model.cfg.image_token_id == 0 { 1 } else { 0 };
    let mut ids = vec![pad; b * n as usize];
    let mut pos_rows = Vec::with_capacity(b);
    let mut images: Vec<&ProcessedImage> = Vec::new();
    for (i, &r) in rows.iter().enumerate() {
        let s = &seqs[r];
        let off = (n as usize) - s.pending.len();
        ids[i * n as usize + off..(i + 1) * n as usize].copy_from_slice(&s.pending);
        let mut row = vec![[0i64; 3]; off];
        row.extend_from_slice(&s.pending_pos);
        pos_rows.push(row);
        images.extend(s.pending_images.iter());
    }
    let ids_t = Tensor::from_slice(&ids)
        .view([b as i64, n])
        .to_device(device);
    let positions = positions_tensor(&pos_rows, n as usize, device);
    let pixel_values;
    let grids: Vec<[i64; 3]> = images.iter().map(|im| im.grid_thw).collect();
    let vision = if images.is_empty() {
        None
    } else {
        let pv: Vec<&Tensor> = images.iter().map(|im| &im.pixel_values).collect();
        pixel_values = Tensor::cat(&pv, 0);
        Some(VisionInput {
            pixel_values: &pixel_values,
            grids: &grids,
        })
    };
    let embeds = model.embed(&ids_t, vision, mode, false)?;
    let width = (c_max + n) as usize;
    let mut mask = vec![false; b * n as usize * width];
    for (i, &r) in rows.iter().enumerate() {
        let vrow = &valid[r * cap as usize..];
        for j in 0..n as usize {
            let m = &mut mask[(i * n as usize + j) * width..(i * n as usize + j + 1) * width];
            for (c, slot) in m.iter_mut().enumerate() {
                *slot = vrow[c] && (c < c_max as usize || c <= c_max as usize + j);
            }
            // A padding query sees itself, so no row is all masked.
            m[c_max as usize + j] = true;
        }
    }
    let mask = Tensor::from_slice(&mask)
        .view([b as i64, 1, n, width as i64])
        .to_device(device);
    let h = model.decode(
        &embeds,
        &positions,
        &AttnMask::Explicit(mask),
        Some((kv.0, kv.1, c_max)),
        mode,
    );
    Ok(model.text.logits(&h.narrow(1, n - 1, 1).squeeze_dim(1)))
}

/// Each row's representative: the first row that starts the same prompt
/// (nothing cached; the same pending tokens, positions and images), or
/// itself. Returns the representatives and, per row, its index among them.
fn distinct_prompts(seqs: &[&mut SeqState]) -> (Vec<usize>, Vec<i64>) {
    let mut reps: Vec<usize> = Vec::new();
    let mut map = Vec::with_capacity(seqs.len());
    for (i, s) in seqs.iter().enumerate() {
        match reps.iter().position(|&r| same_prompt(seqs[r], s)) {
            Some(k) => map.push(k as i64),
            None => {
                map.push(reps.len() as i64);
                reps.push(i);
            }
        }
    }
    (reps, map)
}

fn same_prompt(a: &SeqState, b: &SeqState) -> bool {
    a.cached == 0
        && b.cached == 0
        && a.pending == b.pending
        && a.pending_pos == b.pending_pos
        && a.pending_images.len() == b.pending_images.len()
        && a.pending_images
            .iter()
            .zip(&b.pending_images)
            .all(|(x, y)| x.grid_thw == y.grid_thw && x.pixel_values.equal(&y.pixel_values))
}

/// Buffer columns of `row`'s tokens: its cache, its pending tokens, and the
/// generated tokens fed back so far.
fn row_columns(c_max: i64, n: i64, row: &Row) -> Vec<i64> {
    let mut cols: Vec<i64> = (c_max - row.cached..c_max).collect();
    cols.extend(c_max + n - row.pending..c_max + n);
    cols.extend(c_max + n..c_max + n + row.fed);
    cols
}
