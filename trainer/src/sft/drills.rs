//! Copy drills: the in-context copying a pretrained base model brings, and
//! a tiny model from a random init lacks. A drill is a run of random tokens
//! followed by the same run; the loss is on the repeat, which only attention
//! back to the first run can predict (an induction head). Reading a search
//! result into an answer is that skill, so the warm start drills it.
//!
//! Tokens come from the whole base vocabulary, so names that occur in no
//! training question (the test split's towns) still get trained
//! embeddings to copy with. No fact of the world is in a drill.

use crate::policy::Transcript;
use rand::Rng;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(Clone, Debug, PartialEq)]
pub struct DrillOptions {
    /// The ids a drill draws from.
    pub vocab: Vec<i64>,
    /// Drill-only steps before the trajectories.
    pub warmup_steps: usize,
    /// Drills added to each trajectory step.
    pub per_step: usize,
    /// Length range of the run that is repeated.
    pub min_len: usize,
    pub max_len: usize,
}

/// Draws drills from a seeded stream.
pub struct Drills {
    opts: DrillOptions,
    rng: ChaCha8Rng,
}

impl Drills {
    pub fn new(opts: DrillOptions, seed: u64) -> anyhow::Result<Self> {
        anyhow::ensure!(
            opts.vocab.len() >= 2,
            "copy drills need a vocabulary of at least 2 tokens"
        );
        anyhow::ensure!(
            opts.min_len >= 2 && opts.min_len <= opts.max_len,
            "copy drill lengths {}..={} are not a range of at least 2",
            opts.min_len,
            opts.max_len
        );
        Ok(Self {
            opts,
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0xD411_15EE_D000),
        })
    }

    pub fn options(&self) -> &DrillOptions {
        &self.opts
    }

    /// One drill: `run ++ run`, mask 1 on the repeat after its first token
    /// (the first is a guess; the rest are copies).
    pub fn drill(&mut self) -> Transcript {
        let len = self.rng.random_range(self.opts.min_len..=self.opts.max_len);
        let run: Vec<i64> = (0..len)
            .map(|_| self.opts.vocab[self.rng.random_range(0..self.opts.vocab.len())])
            .collect();
        let mut tokens = run.clone();
        tokens.extend_from_slice(&run);
        let mut mask = vec![0u8; 2 * len];
        for m in &mut mask[len + 1..] {
            *m = 1;
        }
        Transcript {
            sample_logprobs: vec![0.0; tokens.len()],
            tokens,
            response_mask: mask,
            images: Vec::new(),
        }
    }

    pub fn batch(&mut self, n: usize) -> Vec<Transcript> {
        (0..n).map(|_| self.drill()).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts() -> DrillOptions {
        DrillOptions {
            vocab: (10..50).collect(),
            warmup_steps: 0,
            per_step: 4,
            min_len: 3,
            max_len: 9,
        }
    }

    #[test]
    fn a_drill_repeats_its_run_and_masks_the_copies() {
        let mut d = Drills::new(opts(), 7).unwrap();
        for _ in 0..50 {
            let t = d.drill();
            let n = t.tokens.len() / 2;
            assert!((3..=9).contains(&n));
            assert_eq!(t.tokens[..n], t.tokens[n..]);
            assert!(t.tokens.iter().all(|x| (10..50).contains(x)));
            assert_eq!(t.response_len(), n - 1);
            assert!(t.response_mask[..=n].iter().all(|&m| m == 0));
        }
        // Seeded: the same stream again, another seed another.
        let a: Vec<_> = Drills::new(opts(), 7).unwrap().batch(5);
        let b: Vec<_> = Drills::new(opts(), 7).unwrap().batch(5);
        let c: Vec<_> = Drills::new(opts(), 8).unwrap().batch(5);
        let toks = |v: &[Transcript]| v.iter().map(|t| t.tokens.clone()).collect::<Vec<_>>();
        assert_eq!(toks(&a), toks(&b));
        assert_ne!(toks(&a), toks(&c));
    }

    #[test]
    fn bad_options_are_refused() {
        let mut o = opts();
        o.vocab = vec![1];
        assert!(Drills::new(o, 0).is_err());
        let mut o = opts();
        o.min_len = 5;
        o.max_len = 4;
        assert!(Drills::new(o, 0).is_err());
    }
}
