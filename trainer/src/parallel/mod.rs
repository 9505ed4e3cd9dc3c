//! Data parallelism on the CPU, bit for bit: a step's micro-batches shared
//! between the policy and exact replicas on threads of their own, each with
//! an equal share of torch's intra-op threads (on two cores: one each). On
//! this tiny model torch splits one matrix product over two threads poorly,
//! while two single-threaded micro-batches side by side do not slow each
//! other. Gradients are copied out of each micro-batch and summed into the
//! policy's in input order, as one thread's autograd would have added them.

mod threads;

pub use threads::{ThreadCount, per_thread_available};

use crate::policy::TrainablePolicy;
use anyhow::{Result, bail};
use tch::{Kind, Tensor};

/// The policy's replicas, for `n` threads in all (the policy's own included).
pub struct Replicas<P> {
    replicas: Vec<P>,
    threads_each: usize,
}

impl<P: TrainablePolicy> Replicas<P> {
    /// No replicas: the caller's thread does everything.
    fn none() -> Self {
        Replicas {
            replicas: Vec::new(),
            threads_each: 0,
        }
    }

    /// `n - 1` copies of `policy`; none (one thread does it all) when `n` is
    /// 1, the policy cannot copy itself exactly, or torch offers no
    /// per-thread thread count. `what` names the caller in the log.
    pub fn new(policy: &P, n: usize, what: &str) -> Result<Self> {
        let none = Self::none();
        if n <= 1 {
            return Ok(none);
        }
        if !per_thread_available() {
            tracing::info!(
                "{what}: torch has no per-thread thread count here; data_parallel is off"
            );
            return Ok(none);
        }
        let mut replicas = Vec::new();
        for _ in 1..n {
            match policy.replica()? {
                Some(r) => replicas.push(r),
                None => {
                    tracing::info!(
                        "{what}: the policy has no exact replica here; data_parallel is off"
                    );
                    return Ok(none);
                }
            }
        }
        let names = |p: &P| -> Vec<String> {
            p.trainable_parameters()
                .into_iter()
                .map(|(n, _)| n)
                .collect()
        };
        if replicas.iter().any(|r| names(r) != names(policy)) {
            bail!("{what}: a replica's parameters differ from the policy's");
        }
        let threads_each = (tch::get_num_threads().max(1) as usize / n).max(1);
        Ok(Replicas {
            replicas,
            threads_each,
        })
    }

    /// `backward` on each item (which back-propagates into the trainable
    /// parameters of the model it is given), on the policy or a replica:
    /// the costliest item first to the least loaded thread. Then every
    /// item's gradients are added into the policy's in input order, and the
    /// values come back in that order. The policy's gradients should be zero
    /// (or absent) on entry. With no replicas, everything runs here.
    pub fn backward_each<I: Sync, T: Send>(
        &mut self,
        policy: &mut P,
        items: &[I],
        cost: impl Fn(&I) -> usize,
        backward: impl Fn(&mut P, &I) -> Result<T> + Sync,
    ) -> Result<Vec<T>> {
        if self.replicas.is_empty() {
            return items.iter().map(|i| backward(policy, i)).collect();
        }
        let workers = self.replicas.len() + 1;
        let mut order: Vec<usize> = (0..items.len()).collect();
        order.sort_by_key(|&i| std::cmp::Reverse(cost(&items[i])));
        let mut shares: Vec<Vec<usize>> = vec![Vec::new(); workers];
        let mut load = vec![0usize; workers];
        for i in order {
            let w = (0..workers).min_by_key(|&w| load[w]).unwrap_or(0);
            load[w] += cost(&items[i]);
            shares[w].push(i);
        }
        let threads = self.threads_each;
        let run = |p: &mut P, share: &[usize]| -> Result<Vec<(usize, T, Grads)>> {
            let _count = ThreadCount::set(threads);
            share
                .iter()
                .map(|&i| {
                    let value = backward(p, &items[i])?;
                    Ok((i, value, take_grads(p)))
                })
                .collect()
        };
        let mut shares = shares.into_iter();
        let mine = shares.next().unwrap_or_default();
        let mut outs = std::thread::scope(|scope| -> Result<Vec<(usize, T, Grads)>> {
            let handles: Vec<_> = self
                .replicas
                .iter_mut()
                .zip(shares)
                .map(|(r, share)| {
                    let run = &run;
                    scope.spawn(move || run(r, &share))
                })
                .collect();
            let mut outs = run(policy, &mine)?;
            for h in handles {
                let theirs = h
                    .join()
                    .map_err(|_| anyhow::anyhow!("a data-parallel thread panicked"))??;
                outs.extend(theirs);
            }
            Ok(outs)
        })?;
        outs.sort_by_key(|(i, _, _)| *i);
        let params: Vec<Tensor> = policy
            .trainable_parameters()
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        Ok(outs
            .into_iter()
            .map(|(_, value, grads)| {
                accumulate(&params, &grads);
                value
            })
            .collect())
    }

    /// The replicas take the policy's weights (after an optimizer step).
    pub fn sync(&self, policy: &P) {
        if self.replicas.is_empty() {
            return;
        }
        let weights = policy.trainable_parameters();
        tch::no_grad(|| {
            for r in &self.replicas {
                for ((_, dst), (_, src)) in r.trainable_parameters().iter().zip(&weights) {
                    dst.shallow_clone().copy_(src);
                }
            }
        });
    }
}

/// One micro-batch's gradients, by parameter (`None`: not reached).
type Grads = Vec<Option<Tensor>>;

/// Copies the parameters' gradients out and zeroes them, so the next
/// micro-batch on the same model starts clean.
fn take_grads<P: TrainablePolicy>(p: &P) -> Grads {
    p.trainable_parameters()
        .into_iter()
        .map(|(_, t)| {
            let g = t.grad();
            let out = g.defined().then(|| g.copy());
            t.shallow_clone().zero_grad();
            out
        })
        .collect()
}

/// Adds one micro-batch's gradients into `params`' own.
fn accumulate(params: &[Tensor], grads: &[Option<Tensor>]) {
    for (p, g) in params.iter().zip(grads) {
        let Some(g) = g else { continue };
        if !p.grad().defined() {
            // A parameter only another thread's micro-batches reached: autograd
            // gives it a zero gradient first (outside no_grad, so it records).
            (p * 0.0).sum(Kind::Float).backward();
        }
        tch::no_grad(|| {
            let _ = p.grad().f_add_(g);
        });
    }
}
