//! Next-token choice on the device: greedy, or temperature sampling with
//! top-k then top-p (as transformers' warpers apply them), driven by one
//! uniform number per row drawn on the host, so a seed fixes the outcome.
//! The reported log-prob is the token's under softmax(logits / T), before
//! truncation: what a teacher-forced score at the same temperature gives.
//! Suppressed ids (the vision placeholders, which only the chat template may
//! place) are never picked; like truncation, they leave the log-prob as is.

use tch::{Kind, Tensor};

#[derive(Clone, Debug, PartialEq)]
pub struct Sampling {
    /// 0 = greedy.
    pub temperature: f64,
    pub top_p: f64,
    /// 0 = off.
    pub top_k: usize,
    /// Ids never picked, e.g. `<|image_pad|>`: a generated one would claim
    /// an image the turn does not have.
    pub suppress: Vec<i64>,
}

impl Sampling {
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_p: 1.0,
            top_k: 0,
            suppress: Vec::new(),
        }
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// The temperature log-probs are reported at (1 for greedy).
    pub fn logprob_temperature(&self) -> f64 {
        if self.is_greedy() {
            1.0
        } else {
            self.temperature
        }
    }
}

/// Picks one token per row of (B, V) f32 `logits`; `uniform[i]` in [0, 1)
/// drives row i. Returns (ids, log-probs), both on the host.
pub fn pick(logits: &Tensor, s: &Sampling, uniform: &[f64]) -> (Vec<i64>, Vec<f32>) {
    let logits = logits.to_kind(Kind::Float);
    let (b, v) = (logits.size()[0], logits.size()[1]);
    let scaled = logits / s.logprob_temperature();
    let logp = scaled.log_softmax(-1, Kind::Float);
    let suppress: Vec<i64> = s.suppress.iter().copied().filter(|&i| i < v).collect();
    let choose = if suppress.is_empty() {
        scaled.shallow_clone()
    } else {
        let idx = Tensor::from_slice(&suppress).to_device(scaled.device());
        scaled.index_fill(1, &idx, f64::NEG_INFINITY)
    };
    let ids = if s.is_greedy() {
        choose.argmax(-1, false)
    } else {
        // Without suppression the reported distribution is the sampled one.
        let probs = if suppress.is_empty() {
            logp.exp()
        } else {
            choose.softmax(-1, Kind::Float)
        };
        let u = Tensor::from_slice(uniform)
            .to_kind(Kind::Float)
            .to_device(probs.device())
            .view([b, 1]);
        let truncate = (s.top_k > 0 && (s.top_k as i64) < v) || s.top_p < 1.0;
        if truncate {
            let (sorted, order) = probs.sort(-1, true);
            let mut kept = sorted;
            if s.top_k > 0 && (s.top_k as i64) < v {
                let rank = Tensor::arange(v, (Kind::Int64, kept.device())).view([1, v]);
                kept *= rank.lt(s.top_k as i64).to_kind(Kind::Float);
            }
            if s.top_p < 1.0 {
                let renorm = &kept / kept.sum_dim_intlist(-1, true, Kind::Float);
                let before = renorm.cumsum(-1, Kind::Float) - &renorm;
                // The top token always stays.
                kept = &kept * before.lt(s.top_p).to_kind(Kind::Float);
            }
            let j = draw(&kept, &u);
            order.gather(1, &j, false).squeeze_dim(1)
        } else {
            draw(&probs, &u).squeeze_dim(1)
        }
    };
    let lp = logp.gather(1, &ids.unsqueeze(1), false).squeeze_dim(1);
    (
        Vec::<i64>::try_from(ids.to_device(tch::Device::Cpu)).expect("ids"),
        Vec::<f32>::try_from(lp.to_device(tch::Device::Cpu)).expect("log-probs"),
    )
}

/// Inverse-CDF draw from unnormalised weights (B, V): the first index whose
/// cumulative weight passes u · total.
fn draw(weights: &Tensor, u: &Tensor) -> Tensor {
    let v = weights.size()[1];
    let cdf = weights.cumsum(-1, Kind::Float);
    let target = cdf.narrow(1, v - 1, 1) * u;
    cdf.lt_tensor(&target)
        .sum_dim_intlist(-1, true, Kind::Int64)
        .clamp_max(v - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Tensor {
        Tensor::from_slice(&[2.0f32, 1.0, 0.5, -1.0, 3.0, 0.0]).view([1, 6])
    }

    #[test]
    fn greedy_takes_the_argmax() {
        let (ids, lp) = pick(&logits(), &Sampling::greedy(), &[0.3]);
        assert_eq!(ids, vec![4]);
        let want = f64::try_from(logits().log_softmax(-1, Kind::Float).get(0).get(4)).unwrap();
        assert!((lp[0] as f64 - want).abs() < 1e-6);
    }

    #[test]
    fn top_k_and_top_p_truncate() {
        let s = |top_k, top_p| Sampling {
            temperature: 1.0,
            top_p,
            top_k,
            suppress: Vec::new(),
        };
        // top_k 1: always the best, whatever u.
        for u in [0.0, 0.5, 0.999] {
            assert_eq!(pick(&logits(), &s(1, 1.0), &[u]).0, vec![4]);
        }
        // top_k 2: only ids 4 and 0.
        for u in [0.0, 0.7, 0.999] {
            let id = pick(&logits(), &s(2, 1.0), &[u]).0[0];
            assert!(id == 4 || id == 0, "{id}");
        }
        // top_p small: the top token only.
        assert_eq!(pick(&logits(), &s(0, 0.1), &[0.99]).0, vec![4]);
        // No truncation: u near 1 reaches the low-probability tail.
        let id = pick(&logits(), &s(0, 1.0), &[0.9999]).0[0];
        assert_ne!(id, 4);
    }

    #[test]
    fn sampled_log_probs_ignore_truncation() {
        let s = Sampling {
            temperature: 0.7,
            top_p: 0.5,
            top_k: 2,
            suppress: Vec::new(),
        };
        let (ids, lp) = pick(&logits(), &s, &[0.2]);
        let want = f64::try_from(
            (logits() / 0.7)
                .log_softmax(-1, Kind::Float)
                .get(0)
                .get(ids[0]),
        )
        .unwrap();
        assert!((lp[0] as f64 - want).abs() < 1e-6);
    }

    #[test]
    fn suppressed_ids_are_never_picked_and_keep_their_log_probs() {
        // Id 4 is the argmax and the likeliest sample; suppressed, it never comes.
        let greedy = Sampling {
            suppress: vec![4, 99],
            ..Sampling::greedy()
        };
        let (ids, lp) = pick(&logits(), &greedy, &[0.5]);
        assert_eq!(ids, vec![0]);
        let want = f64::try_from(logits().log_softmax(-1, Kind::Float).get(0).get(0)).unwrap();
        assert!((lp[0] as f64 - want).abs() < 1e-6);
        let sampled = Sampling {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            suppress: vec![4],
        };
        for k in 0..200 {
            let u = k as f64 / 200.0;
            assert_ne!(pick(&logits(), &sampled, &[u]).0[0], 4, "u = {u}");
        }
    }
}
