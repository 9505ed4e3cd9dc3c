//! Continuous batching: one decode that rows join and leave between steps.
//!
//! Live rows fill the first rows of one buffer per layer; each row's
//! tokens sit in contiguous columns ending at the shared write column `col`:
//!
//! ```text
//! [ dead | … | row i: cache, prompt, fed tokens ] col [ free … ] cap
//! ```
//!
//! A joining row's prompt is prefilled apart, as [`super::generate`]
//! prefills a call (prompts a group shares computed once), and its
//! keys/values are copied into a free row to end at `col`. The buffers are
//! rebuilt only when the joiners need more rows than are free, more
//! columns before `col` or more free columns after it than there are; a
//! rebuild drops the dead columns left of every live row and keeps slack.
//! A row that leaves takes its compact cache (as `generate` leaves it) and
//! the last row moves into its place, one row's copy, so the live rows stay
//! first and a step computes only them. Each step feeds the rows' last
//! tokens, admits the joiners, samples one token per row, and takes out the
//! rows that are done.

use super::generate::{
    Finished, GenParams, GenStats, Generated, SeqState, prefill_batch, row_seed,
};
use super::layers::Mode;
use super::qwen::QwenVl;
use super::rope::positions_tensor;
use super::sampling::pick;
use super::text::AttnMask;
use anyhow::{Result, ensure};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Kind, Tensor};

/// A sequence joining the decode.
pub struct Joining {
    pub key: usize,
    pub seq: SeqState,
    pub max_new_tokens: usize,
}

struct Live {
    key: usize,
    seq: SeqState,
    /// First column of the row's tokens.
    start: i64,
    /// Tokens it held when it joined (cache and prompt).
    joined_len: i64,
    pos: i64,
    fed: i64,
    max_new: usize,
    out: Generated,
    rng: ChaCha8Rng,
}

/// The running decode. Sampling settings are fixed for its life.
pub struct ContinuousDecode {
    params: GenParams,
    /// `[slots, kv heads, cap, head dim]` per layer; rows `0..rows.len()`
    /// are live, the rest free.
    k: Vec<Tensor>,
    v: Vec<Tensor>,
    /// `[slots, cap]`: which columns hold a token of the row.
    valid: Tensor,
    col: i64,
    cap: i64,
    rows: Vec<Live>,
}

impl ContinuousDecode {
    pub fn new(params: GenParams) -> Self {
        Self {
            params,
            k: Vec::new(),
            v: Vec::new(),
            valid: Tensor::new(),
            col: 0,
            cap: 0,
            rows: Vec::new(),
        }
    }

    pub fn params(&self) -> &GenParams {
        &self.params
    }

    /// Rows decoding.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// One step: feed the rows' last tokens, admit `join` (row k seeded
    /// as `generate` seeds row k with `seed`), sample a token for every
    /// row, and return the rows that are done, their sequences settled to
    /// continue as after `generate`.
    pub fn step(
        &mut self,
        model: &QwenVl,
        join: Vec<Joining>,
        seed: u64,
        mode: Mode,
        stats: &mut GenStats,
    ) -> Result<Vec<(usize, SeqState, Generated)>> {
        let _no_grad = tch::no_grad_guard();
        for j in &join {
            ensure!(
                !j.seq.pending().is_empty(),
                "sequence {} has nothing to continue from",
                j.key
            );
            ensure!(
                j.max_new_tokens > 0,
                "sequence {} joins with no token budget",
                j.key
            );
        }
        let mut parts = Vec::with_capacity(2);
        if !self.rows.is_empty() {
            parts.push(self.feed(model, mode, stats));
        }
        if !join.is_empty() {
            parts.push(self.admit(model, join, seed, mode, stats)?);
        }
        if self.rows.is_empty() {
            return Ok(Vec::new());
        }
        let logits = if parts.len() == 1 {
            parts.pop().expect("one part")
        } else {
            Tensor::cat(&parts, 0)
        };
        let uniform: Vec<f64> = self.rows.iter_mut().map(|r| r.rng.random()).collect();
        let (toks, lps) = pick(&logits, &self.params.sampling, &uniform);
        let mut finished = Vec::new();
        for (r, row) in self.rows.iter_mut().enumerate() {
            row.out.ids.push(toks[r]);
            row.out.logprobs.push(lps[r]);
            row.out.stopped = self.params.stop.contains(&toks[r]);
            if row.out.stopped || row.out.ids.len() >= row.max_new {
                finished.push(r);
            }
        }
        Ok(self.take_out(&finished))
    }

    /// Feeds every row's last sampled token at `col`; their next logits.
    fn feed(&mut self, model: &QwenVl, mode: Mode, stats: &mut GenStats) -> Tensor {
        let t0 = std::time::Instant::now();
        let device = model.device();
        let live = self.rows.len() as i64;
        let last: Vec<i64> = self
            .rows
            .iter()
            .map(|r| *r.out.ids.last().expect("sampled"))
            .collect();
        let pos: Vec<Vec<[i64; 3]>> = self.rows.iter().map(|r| vec![[r.pos + r.fed; 3]]).collect();
        let ids = Tensor::from_slice(&last).view([live, 1]).to_device(device);
        // Views of the live rows: the free ones cost nothing.
        let live_rows =
            |t: &[Tensor]| -> Vec<Tensor> { t.iter().map(|t| t.narrow(0, 0, live)).collect() };
        let (k, v) = (live_rows(&self.k), live_rows(&self.v));
        let valid = self.valid.narrow(0, 0, live);
        let _ = valid.narrow(1, self.col, 1).fill_(1);
        let seen = valid.narrow(1, 0, self.col + 1);
        let mask = AttnMask::Explicit(seen.view([live, 1, 1, self.col + 1]));
        let h = model.decode(
            &model.text.embed_tokens(&ids),
            &positions_tensor(&pos, 1, device),
            &mask,
            Some((&k, &v, self.col)),
            mode,
        );
        for r in self.rows.iter_mut() {
            r.fed += 1;
        }
        self.col += 1;
        stats.decode_tokens += live as usize;
        stats.decode_secs += t0.elapsed().as_secs_f64();
        model.text.logits(&h.squeeze_dim(1))
    }

    /// Prefills `join` and copies its rows in, ending at `col`; their
    /// next-token logits.
    fn admit(
        &mut self,
        model: &QwenVl,
        mut join: Vec<Joining>,
        seed: u64,
        mode: Mode,
        stats: &mut GenStats,
    ) -> Result<Tensor> {
        let device = model.device();
        let pre = {
            let seqs: Vec<&mut SeqState> = join.iter_mut().map(|j| &mut j.seq).collect();
            prefill_batch(model, &seqs, 0, self.params.share_prefill, mode, stats)?
        };
        let lens: Vec<i64> = join.iter().map(|j| j.seq.len() as i64).collect();
        let longest = *lens.iter().max().expect("joiners");
        // Free columns every row may still write.
        let room = self
            .rows
            .iter()
            .map(|r| r.max_new - r.out.ids.len())
            .chain(join.iter().map(|j| j.max_new_tokens))
            .max()
            .unwrap_or(0) as i64;
        let b0 = self.rows.len() as i64;
        let extra = join.len() as i64;
        if self.slots() - b0 < extra || self.col < longest || self.cap - self.col < room {
            self.widen(model, extra, longest, room);
            stats.kv_rebuilds += 1;
        }
        let layers = self.k.len();
        let c = pre.layout;
        for (i, (j, &len)) in join.iter().zip(&lens).enumerate() {
            let (cached, pending) = (j.seq.cached_len() as i64, j.seq.pending().len() as i64);
            let mut cols: Vec<i64> = (c.c_max - cached..c.c_max).collect();
            cols.extend(c.c_max + c.n - pending..c.c_max + c.n);
            let idx = Tensor::from_slice(&cols).to_device(device);
            let row = b0 + i as i64;
            for l in 0..layers {
                self.k[l]
                    .get(row)
                    .narrow(1, self.col - len, len)
                    .copy_(&pre.k_buf[l].get(i as i64).index_select(1, &idx));
                self.v[l]
                    .get(row)
                    .narrow(1, self.col - len, len)
                    .copy_(&pre.v_buf[l].get(i as i64).index_select(1, &idx));
            }
            // A free row keeps what its last tenant left: masked out here.
            let mut valid = self.valid.get(row);
            let _ = valid.zero_();
            let _ = valid.narrow(0, self.col - len, len).fill_(1);
        }
        for (k, (mut j, len)) in join.into_iter().zip(lens).enumerate() {
            let pos = j.seq.next_pos();
            j.seq.drop_cache();
            self.rows.push(Live {
                key: j.key,
                seq: j.seq,
                start: self.col - len,
                joined_len: len,
                pos,
                fed: 0,
                max_new: j.max_new_tokens,
                out: Generated {
                    ids: Vec::new(),
                    logprobs: Vec::new(),
                    stopped: false,
                },
                rng: ChaCha8Rng::seed_from_u64(row_seed(seed, k)),
            });
        }
        Ok(pre.logits)
    }

    /// Rows the buffers hold, live and free.
    fn slots(&self) -> i64 {
        self.k.first().map_or(0, |k| k.size()[0])
    }

    /// Rebuilds the buffers with `extra` more rows, whose tokens need
    /// `longest` columns before `col`, and `room` free columns from `col` on
    /// for every row; the columns left of every live row are dropped, and
    /// rows freed before stay (the engine refills them as sessions rejoin).
    fn widen(&mut self, model: &QwenVl, extra: i64, longest: i64, room: i64) {
        let (device, kind) = (model.device(), model.kind());
        let (kvh, hd) = (model.cfg.num_kv_heads() as i64, model.cfg.head_dim() as i64);
        let live = self.rows.len() as i64;
        let cut = self.rows.iter().map(|r| r.start).min().unwrap_or(self.col);
        let kept = self.col - cut;
        let pad = (longest - kept).max(0);
        let col = kept + pad;
        let free = self.cap - self.col;
        // Slack, so a decode that rows keep joining grows rarely.
        let cap = col + if free >= room { free } else { room + room / 2 };
        let rebuild = |old: Option<&Tensor>, shape: Vec<i64>, kind: Kind, dim: i64| -> Tensor {
            let t = Tensor::zeros(shape, (kind, device));
            if let Some(old) = old
                && live > 0
                && kept > 0
            {
                t.narrow(0, 0, live)
                    .narrow(dim, pad, kept)
                    .copy_(&old.narrow(0, 0, live).narrow(dim, cut, kept));
            }
            t
        };
        let layers = model.text.layers.len();
        let slots = (live + extra).max(self.slots());
        let shape = vec![slots, kvh, cap, hd];
        let k: Vec<Tensor> = (0..layers)
            .map(|l| rebuild(self.k.get(l), shape.clone(), kind, 2))
            .collect();
        let v: Vec<Tensor> = (0..layers)
            .map(|l| rebuild(self.v.get(l), shape.clone(), kind, 2))
            .collect();
        let valid = rebuild(
            (live > 0).then_some(&self.valid),
            vec![slots, cap],
            Kind::Bool,
            1,
        );
        (self.k, self.v, self.valid) = (k, v, valid);
        for r in self.rows.iter_mut() {
            r.start += pad - cut;
        }
        self.col = col;
        self.cap = cap;
    }

    /// Takes rows `finished` (ascending) out of the decode with their
    /// compact caches.
    fn take_out(&mut self, finished: &[usize]) -> Vec<(usize, SeqState, Generated)> {
        if finished.is_empty() {
            return Vec::new();
        }
        let mut out = Vec::with_capacity(finished.len());
        for &r in finished {
            let row = &self.rows[r];
            let width = row.joined_len + row.fed;
            let cache = self
                .k
                .iter()
                .zip(&self.v)
                .map(|(k, v)| {
                    (
                        k.get(r as i64).narrow(1, row.start, width).copy(),
                        v.get(r as i64).narrow(1, row.start, width).copy(),
                    )
                })
                .collect();
            let last_pos = row.pos + row.fed;
            let fin = Finished {
                out: row.out.clone(),
                cache,
                cached: width as usize,
                last_pos,
            };
            out.push((r, fin));
        }
        // Last first, so the row moved into a leaver's place is live.
        let mut taken = Vec::with_capacity(finished.len());
        for (r, fin) in out.into_iter().rev() {
            let last = self.rows.len() - 1;
            if r != last {
                let (from, to) = (last as i64, r as i64);
                let moved = &self.rows[last];
                let width = self.col - moved.start;
                for t in self.k.iter().chain(&self.v) {
                    t.get(to)
                        .narrow(1, moved.start, width)
                        .copy_(&t.get(from).narrow(1, moved.start, width));
                }
                self.valid.get(to).copy_(&self.valid.get(from));
            }
            let mut row = self.rows.swap_remove(r);
            let g = fin.settle(&mut row.seq);
            taken.push((row.key, row.seq, g));
        }
        taken.reverse();
        if self.rows.is_empty() {
            // Nothing left: the next joiners start fresh buffers.
            self.k.clear();
            self.v.clear();
            self.valid = Tensor::new();
            self.col = 0;
            self.cap = 0;
        }
        taken
    }
}
