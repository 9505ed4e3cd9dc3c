//! The step loop. Each step takes the next `rollout.batch_prompts` samples,
//! rolls each out `rollout.n` times with search in the loop, scores the
//! trajectories, and runs one GRPO update; metrics go to the run dir and
//! checkpoints are written every `run.save_every` steps.
//!
//! ```text
//! RUN_DIR/config.toml        the resolved config
//! RUN_DIR/metrics.jsonl      one line per step
//! RUN_DIR/val_metrics.jsonl  one line per validation ([val])
//! RUN_DIR/val/step-NNNNNNNN.json  its answers, as an eval report (val.save_results)
//! RUN_DIR/rollouts/step-NNNNNNNN.jsonl  every trajectory of a step (run.rollouts_every)
//! RUN_DIR/checkpoints/step-NNNNNNNN/
//! RUN_DIR/tensorboard/events.out.tfevents.*   (run.tensorboard)
//! ```

use super::batch::{mean, reward_means, score_batch, search_metrics, source_metrics};
use super::checkpoint::{self, CheckpointState};
use super::config::{DataConfig, TrainConfig};
use super::disk;
use super::metrics::{MetricsLog, StepMetrics, TimeMetrics};
use super::rollout_log;
use super::stop::{RunControl, StopPoint, StopRequest, Stopped};
use super::tensorboard::EventWriter;
use super::update::{UpdateSettings, grpo_update};
use super::validation::{VAL_METRICS_FILE, VAL_RESULTS_DIR, ValMetrics, Validator};
use crate::algo::{AdamW, LrSchedule};
use crate::data::{DataCursor, Sample};
use crate::policy::{TrainablePolicy, Transcript};
use crate::rollout::{Prompts, RolloutEngine, RolloutRequest, mix};
use crate::tools::SearchTools;
use anyhow::{Context, Result, bail, ensure};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use sha2::{Digest, Sha256};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;
use tch::Tensor;
use tokio::runtime::Handle;

pub const CONFIG_FILE: &str = "config.toml";
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const CHECKPOINTS_DIR: &str = "checkpoints";
pub const TENSORBOARD_DIR: &str = "tensorboard";

/// Salts that give each random stream of a step its own seed.
const TORCH_SALT: u64 = 0x7A11_5EED;
const ROLLOUT_SALT: u64 = 0x0A11_0075;

/// Loads `data.train` under the bad-row policy, keeping the first
/// `data.max_samples`.
pub fn load_samples(cfg: &DataConfig) -> Result<Vec<Sample>> {
    if cfg.train.is_empty() {
        bail!("data.train is empty: name a .parquet or .jsonl dataset");
    }
    let mut ds = crate::data::load(Path::new(&cfg.train), &cfg.load_options())
        .with_context(|| format!("data.train = {:?}", cfg.train))?;
    if cfg.max_samples > 0 {
        ds.samples.truncate(cfg.max_samples);
    }
    Ok(ds.samples)
}

/// On resume with `val.keep_best`: the best validation in the (resumed)
/// log that has a checkpoint, the earliest of equals, as the unbroken run
/// had it; `best.json` is rewritten to match (a run killed mid-save may
/// have left it naming a pruned one).
fn best_on_disk(val_log: &Path, ck_root: &Path) -> Result<Option<checkpoint::Best>> {
    let text = match std::fs::read_to_string(val_log) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("reading {}", val_log.display())),
    };
    let saved: Vec<usize> = checkpoint::list(ck_root)?
        .into_iter()
        .map(|c| c.0)
        .collect();
    let mut best: Option<checkpoint::Best> = None;
    for (i, line) in text.lines().enumerate() {
        let v: ValMetrics = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", val_log.display(), i + 1))?;
        if saved.contains(&v.step) && best.as_ref().is_none_or(|b| v.reward > b.reward) {
            best = Some(checkpoint::Best {
                step: v.step,
                checkpoint: checkpoint::dir_name(v.step),
                reward: v.reward,
                accuracy: v.accuracy,
            });
        }
    }
    if let Some(b) = &best {
        checkpoint::write_best(ck_root, b)?;
    }
    Ok(best)
}

/// Identifies a dataset's content, so a resume on other data is refused.
fn data_fingerprint(samples: &[Sample]) -> String {
    let mut h = Sha256::new();
    for s in samples {
        for part in [&s.id, &s.question, &s.gold.ground_truth] {
            h.update(part.as_bytes());
            h.update([0]);
        }
        h.update(s.images.first().map_or(0, |i| i.len()).to_le_bytes());
    }
    format!(
        "{} samples, sha256 {}",
        samples.len(),
        hex::encode(h.finalize())
    )
}

/// A bar over the steps on a terminal; hidden otherwise (logs stay clean).
fn progress_bar(enabled: bool, total_steps: usize, step: usize) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::with_draw_target(Some(total_steps as u64), ProgressDrawTarget::stderr());
    pb.set_style(
        ProgressStyle::with_template(
            "{spinner} step {pos}/{len} [{bar:30}] {elapsed_precise} eta {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    pb.set_position(step as u64);
    pb
}

/// Where a run ended.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub first_step: usize,
    pub last_step: usize,
    pub last: Option<StepMetrics>,
    pub checkpoint: Option<PathBuf>,
    /// Validations that failed (logged as errors; training went on).
    pub failed_validations: usize,
    /// The best validated checkpoint (`val.keep_best`).
    pub best: Option<checkpoint::Best>,
}

pub struct Trainer<P: TrainablePolicy, T: SearchTools + 'static> {
    cfg: TrainConfig,
    policy: P,
    engine: RolloutEngine<T>,
    samples: Vec<Sample>,
    data_fingerprint: String,
    optim: AdamW,
    params: Vec<Tensor>,
    cursor: DataCursor,
    step: usize,
    total_steps: usize,
    schedule: LrSchedule,
    dir: PathBuf,
    metrics: MetricsLog,
    tensorboard: Option<EventWriter>,
    progress: ProgressBar,
    saved_step: Option<usize>,
    validator: Option<Box<dyn Validator<P>>>,
    val_log: Option<MetricsLog>,
    /// The best validation that has a checkpoint (`val.keep_best`).
    best: Option<checkpoint::Best>,
    stop: StopRequest,
}

impl<P: TrainablePolicy, T: SearchTools + 'static> Trainer<P, T> {
    /// Sets up the run dir (or, with `control.resume`, continues the latest
    /// checkpoint in it). `handle` belongs to a multi-threaded runtime; call
    /// [`Self::run`] from outside it.
    pub fn new(
        cfg: TrainConfig,
        policy: P,
        tools: Arc<T>,
        handle: Handle,
        samples: Vec<Sample>,
        control: RunControl,
    ) -> Result<Self> {
        let RunControl { resume, stop } = control;
        cfg.validate_grpo()?;
        ensure!(!samples.is_empty(), "no training samples");
        let prompts =
            Arc::new(Prompts::load(&cfg.rollout.prompts_dir).context("rollout.prompts_dir")?);
        let engine = RolloutEngine::new(cfg.rollout.clone(), prompts, tools, handle);
        let total_steps = if cfg.run.total_steps > 0 {
            cfg.run.total_steps
        } else {
            cfg.run.epochs * samples.len().div_ceil(cfg.rollout.batch_prompts)
        };
        let named = policy.trainable_parameters();
        ensure!(!named.is_empty(), "the policy has no trainable parameters");
        let params: Vec<Tensor> = named.iter().map(|(_, t)| t.shallow_clone()).collect();
        let mut optim = AdamW::new(named, cfg.actor.adamw());
        let schedule = LrSchedule {
            lr: cfg.actor.lr,
            warmup_steps: cfg.actor.warmup_steps,
            total_steps,
            decay: cfg.actor.decay,
            min_lr_ratio: cfg.actor.min_lr_ratio,
        };
        let dir = PathBuf::from(&cfg.run.dir);
        let ck_root = dir.join(CHECKPOINTS_DIR);
        // The first save comes after the first steps' work.
        disk::ensure_room(
            &ck_root,
            policy.checkpoint_bytes(),
            "a checkpoint (weights and optimizer state)",
        )?;
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("creating run dir {}", dir.display()))?;
        let fingerprint = data_fingerprint(&samples);
        let mut cursor = DataCursor::new(cfg.run.seed, cfg.data.shuffle);
        let mut step = 0;
        let metrics_path = dir.join(METRICS_FILE);
        let val_path = dir.join(VAL_METRICS_FILE);
        let mut resumed = false;
        let metrics = match (resume, checkpoint::latest(&ck_root)?) {
            (true, Some(ck_dir)) => {
                let ck = checkpoint::load(&ck_dir)?;
                let what = format!("checkpoint {}", ck_dir.display());
                checkpoint::check_compatible(&ck.config, &cfg).with_context(|| what.clone())?;
                ensure!(
                    ck.state.data == fingerprint,
                    "{what} was trained on other data ({}; now {fingerprint})",
                    ck.state.data
                );
                let named = policy.trainable_parameters();
                checkpoint::restore(&ck.weights, &named, &format!("{what}: weights"))?;
                optim
                    .load_state(ck.state.optimizer_steps, &ck.optimizer)
                    .with_context(|| format!("{what}: optimizer"))?;
                cursor = ck.state.cursor;
                step = ck.state.step;
                tracing::info!(checkpoint = %ck_dir.display(), step, "resuming");
                resumed = true;
                rollout_log::drop_steps_after(&dir.join(rollout_log::ROLLOUTS_DIR), step)?;
                rollout_log::drop_steps_after(&dir.join(VAL_RESULTS_DIR), step)?;
                MetricsLog::resume(&metrics_path, step)?
            }
            (true, None) => {
                tracing::warn!(dir = %ck_root.display(), "--resume: no checkpoint yet; starting from step 0");
                MetricsLog::create(&metrics_path)?
            }
            (false, Some(ck_dir)) => bail!(
                "run dir {} already holds checkpoints (latest {}): pass --resume to continue it, or set another run.dir",
                dir.display(),
                ck_dir.display()
            ),
            (false, None) => MetricsLog::create(&metrics_path)?,
        };
        let val_log = match (cfg.val.enabled(), resumed) {
            (false, _) => None,
            (true, true) => Some(MetricsLog::resume(&val_path, step)?),
            (true, false) => Some(MetricsLog::create(&val_path)?),
        };
        let best = if cfg.val.keep_best && resumed {
            best_on_disk(&val_path, &ck_root)?
        } else {
            None
        };
        std::fs::write(dir.join(CONFIG_FILE), cfg.to_toml()?)
            .with_context(|| format!("writing {}", dir.join(CONFIG_FILE).display()))?;
        let tensorboard = if cfg.run.tensorboard {
            Some(EventWriter::create(&dir.join(TENSORBOARD_DIR))?)
        } else {
            None
        };
        let progress = progress_bar(cfg.run.progress, total_steps, step);
        Ok(Self {
            cfg,
            policy,
            engine,
            samples,
            data_fingerprint: fingerprint,
            optim,
            params,
            cursor,
            step,
            total_steps,
            schedule,
            dir,
            metrics,
            tensorboard,
            progress,
            saved_step: resume.then_some(step),
            validator: None,
            val_log,
            best,
            stop,
        })
    }

    /// What runs the validations `[val]` asks for (`eval::HeldOut`).
    pub fn with_validator(mut self, validator: Box<dyn Validator<P>>) -> Self {
        self.validator = Some(validator);
        self
    }

    pub fn step(&self) -> usize {
        self.step
    }

    pub fn total_steps(&self) -> usize {
        self.total_steps
    }

    pub fn policy(&self) -> &P {
        &self.policy
    }

    pub fn run_dir(&self) -> &Path {
        &self.dir
    }

    /// Trains to `total_steps`, checkpointing every `save_every` steps and
    /// at the end. A stop requested meanwhile ends it after the step under
    /// way, checkpointed, with [`Stopped`].
    pub fn run(&mut self) -> Result<RunSummary> {
        let first_step = self.step;
        let mut last = None;
        let mut checkpoint = None;
        let val = self.cfg.val.clone();
        ensure!(
            !val.enabled() || self.validator.is_some(),
            "[val] asks for validation, but this trainer was given no validator"
        );
        let mut failed_validations = 0;
        if val.before_train && self.step == 0 {
            let v = self.validate_or_log();
            failed_validations += usize::from(v.is_none());
            if let Some(v) = v.as_ref().filter(|v| self.is_new_best(v)) {
                checkpoint = Some(self.save_best(v)?);
            }
        }
        while self.step < self.total_steps {
            if self.stop.is_requested() {
                return Err(self.stopped()?.into());
            }
            let m = self.train_step()?;
            // Before the checkpoint: a run killed in between validates
            // this step again after its resume.
            let mut v = None;
            if val.every > 0
                && (self.step.is_multiple_of(val.every) || self.step == self.total_steps)
            {
                v = self.validate_or_log();
                failed_validations += usize::from(v.is_none());
            }
            let every = self.cfg.run.save_every;
            if let Some(v) = v.as_ref().filter(|v| self.is_new_best(v)) {
                checkpoint = Some(self.save_best(v)?);
            } else if every > 0 && self.step.is_multiple_of(every) {
                checkpoint = Some(self.save()?);
            }
            last = Some(m);
        }
        if self.saved_step != Some(self.step) {
            checkpoint = Some(self.save()?);
        }
        self.progress.finish_and_clear();
        Ok(RunSummary {
            first_step,
            last_step: self.step,
            last,
            checkpoint,
            failed_validations,
            best: self.best.clone(),
        })
    }

    /// Checkpoints the step reached, unless it is saved or no step ran.
    fn stopped(&mut self) -> Result<Stopped> {
        if self.saved_step != Some(self.step) && self.step > 0 {
            self.save()?;
        }
        self.progress.finish_and_clear();
        let root = self.dir.join(CHECKPOINTS_DIR);
        Ok(Stopped {
            what: "GRPO",
            at: StopPoint::Step {
                step: self.step,
                total: self.total_steps,
            },
            checkpoint: self
                .saved_step
                .filter(|&s| s == self.step && s > 0)
                .map(|s| root.join(checkpoint::dir_name(s))),
        })
    }

    /// A failed validation (a model error, a tool that hangs past
    /// `val.tool_timeout_s`) is logged and skipped: it must not cost the
    /// steps since the last checkpoint. Returns its metrics, if it ran.
    fn validate_or_log(&mut self) -> Option<ValMetrics> {
        match self.validate() {
            Ok(m) => Some(m),
            Err(e) => {
                self.progress.suspend(|| {
                    tracing::error!(
                        step = self.step,
                        "{e:#}; no validation line for this step, training goes on"
                    )
                });
                None
            }
        }
    }

    /// Whether `v` beats the best validation so far (`val.keep_best`).
    fn is_new_best(&self, v: &ValMetrics) -> bool {
        self.cfg.val.keep_best && self.best.as_ref().is_none_or(|b| v.reward > b.reward)
    }

    /// Checkpoints the policy `v` validated as the new best (pruning
    /// protects it from then on), then names it in `best.json`; a run that
    /// dies in between finds it from the log on resume.
    fn save_best(&mut self, v: &ValMetrics) -> Result<PathBuf> {
        let best = checkpoint::Best {
            step: self.step,
            checkpoint: checkpoint::dir_name(self.step),
            reward: v.reward,
            accuracy: v.accuracy,
        };
        let old = self.best.replace(best.clone());
        let saved = self.save();
        if saved.is_err() {
            self.best = old;
        }
        let dir = saved?;
        checkpoint::write_best(&self.dir.join(CHECKPOINTS_DIR), &best)?;
        self.progress.suspend(|| {
            tracing::info!(
                step = best.step,
                reward = best.reward,
                "best validation so far; checkpoint kept"
            )
        });
        Ok(dir)
    }

    /// One rollout batch and one GRPO update.
    pub fn train_step(&mut self) -> Result<StepMetrics> {
        let started = Instant::now();
        let k = self.step + 1;
        let seed = self.cfg.run.seed;
        // Every random draw of the step comes from (seed, k): a resume
        // replays it exactly.
        tch::manual_seed(mix(seed ^ TORCH_SALT, k as u64) as i64);
        let picks = self
            .cursor
            .next_batch(self.samples.len(), self.cfg.rollout.batch_prompts);
        let n = self.cfg.rollout.n;
        let mut requests = Vec::with_capacity(picks.len() * n);
        let mut golds = Vec::with_capacity(picks.len() * n);
        let mut sources = Vec::with_capacity(picks.len() * n);
        for &i in &picks {
            let s = &self.samples[i];
            for _ in 0..n {
                sources.push(s.data_source.as_str());
                requests.push(RolloutRequest {
                    id: s.id.clone(),
                    question: s.question.clone(),
                    image: s.images[0].clone(),
                    image_url: s.image_url.clone(),
                });
                golds.push(&s.gold);
            }
        }
        let (trajectories, rollout) = self
            .engine
            .run(
                &mut self.policy,
                &requests,
                mix(seed ^ ROLLOUT_SALT, k as u64),
            )
            .with_context(|| format!("step {k}: rollout"))?;
        let scored = score_batch(
            &trajectories,
            &golds,
            &sources,
            n,
            &self.cfg.reward,
            &self.cfg.algo,
        );

        let update_started = Instant::now();
        let (batch, advantages): (Vec<&Transcript>, Vec<f64>) = trajectories
            .iter()
            .zip(&scored.advantages)
            .zip(&scored.keep)
            .filter(|(_, keep)| **keep)
            .map(|((t, a), _)| (&t.transcript, *a))
            .unzip();
        let lr = self.schedule.at(k - 1);
        let update = grpo_update(
            &mut self.policy,
            &mut self.optim,
            &self.params,
            &batch,
            &advantages,
            &UpdateSettings {
                algo: &self.cfg.algo,
                temperature: self.cfg.rollout.temperature,
                grad_clip: self.cfg.actor.grad_clip,
                lr,
                response_budget: self.cfg.rollout.max_response_tokens,
            },
        )
        .with_context(|| format!("step {k}: update"))?;
        let update_secs = update_started.elapsed().as_secs_f64();

        let (reward, accuracy, format) = reward_means(&scored.rewards);
        let m = StepMetrics {
            step: k,
            epoch: self.cursor.epoch,
            reward,
            accuracy,
            format,
            search: search_metrics(&trajectories),
            by_source: source_metrics(&trajectories, &scored.rewards, &sources),
            response_length: mean(trajectories.iter().map(|t| t.response_tokens() as f64)),
            turns: mean(trajectories.iter().map(|t| t.turns.len() as f64)),
            tool_errors: trajectories.iter().map(|t| t.tool_errors).sum(),
            trajectories: trajectories.len(),
            trained_trajectories: batch.len(),
            filtered_groups: scored.filtered_groups,
            update,
            lr,
            time: TimeMetrics {
                generation: rollout.generate.as_secs_f64(),
                tools: rollout.tool_wait.as_secs_f64(),
                rollout: rollout.wall.as_secs_f64(),
                update: update_secs,
                step: started.elapsed().as_secs_f64(),
            },
        };
        let every = self.cfg.run.rollouts_every;
        if every > 0 && k.is_multiple_of(every) {
            let groups: Vec<&Sample> = picks.iter().map(|&i| &self.samples[i]).collect();
            let records = rollout_log::step_records(k, &trajectories, &groups, &scored);
            // A log to read, not state: failing to write it must not cost
            // the steps since the last checkpoint.
            if let Err(e) = rollout_log::write_step(&self.dir, k, &records) {
                self.progress.suspend(|| {
                    tracing::warn!(
                        step = k,
                        "{e:#}; no rollout log for this step, training goes on"
                    )
                });
            }
        }
        self.step = k;
        self.log(&m)?;
        Ok(m)
    }

    /// Runs the validator on the current policy and logs its line.
    fn validate(&mut self) -> Result<ValMetrics> {
        let started = Instant::now();
        let step = self.step;
        let validator = self
            .validator
            .as_mut()
            .context("validation without a validator")?;
        let mut m = validator
            .validate(&mut self.policy, step)
            .with_context(|| format!("validation after step {step}"))?;
        m.step = step;
        m.secs = started.elapsed().as_secs_f64();
        if let Some(log) = &mut self.val_log {
            log.append(&m)?;
        }
        self.tensorboard_scalars(step, &m, "val/")?;
        self.progress.suspend(|| {
            tracing::info!(
                step,
                reward = m.reward,
                accuracy = m.accuracy,
                search = m.search.ratio,
                questions = m.questions,
                secs = m.secs,
                "validation"
            )
        });
        Ok(m)
    }

    /// Every number in `m` but its step, as TensorBoard scalars.
    fn tensorboard_scalars<M: serde::Serialize>(
        &mut self,
        step: usize,
        m: &M,
        prefix: &str,
    ) -> Result<()> {
        let Some(tb) = &mut self.tensorboard else {
            return Ok(());
        };
        let line = serde_json::to_string(m)?;
        let rec = crate::report::metrics_log::parse(&line, "metrics")?;
        let scalars = rec[0]
            .values
            .iter()
            .filter(|(k, _)| k.as_str() != "step")
            .map(|(k, v)| (format!("{prefix}{k}"), *v as f32))
            .collect();
        tb.scalars(step as i64, scalars)
    }

    fn log(&mut self, m: &StepMetrics) -> Result<()> {
        self.metrics.append(m)?;
        self.tensorboard_scalars(m.step, m, "")?;
        self.progress.set_position(m.step as u64);
        self.progress.set_message(format!(
            "reward {:.3} acc {:.3} search {:.2}",
            m.reward, m.accuracy, m.search.ratio
        ));
        // Logs go around the bar, not through it.
        self.progress.suspend(|| {
            tracing::info!(
                step = m.step,
                reward = m.reward,
                accuracy = m.accuracy,
                format = m.format,
                search = m.search.ratio,
                kl = m.update.kl,
                grad_norm = m.update.grad_norm,
                lr = m.lr,
                secs = m.time.step,
                "step"
            )
        });
        Ok(())
    }

    /// Writes a checkpoint of the current step and prunes old ones.
    pub fn save(&mut self) -> Result<PathBuf> {
        let root = self.dir.join(CHECKPOINTS_DIR);
        let state = CheckpointState::new(
            self.step,
            self.cursor.clone(),
            self.optim.steps_taken(),
            self.cfg.run.seed,
            self.data_fingerprint.clone(),
        );
        let dir = checkpoint::save_and_prune(
            &root,
            &self.cfg,
            state,
            &self.policy.trainable_parameters(),
            &self.optim.state_tensors(),
            self.cfg.run.keep_checkpoints,
            self.best.as_ref().map(|b| b.step),
        )?;
        self.saved_step = Some(self.step);
        Ok(dir)
    }
}
