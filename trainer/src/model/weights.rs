//! Weights in and out: HF safetensors (one file, or shards listed in
//! `model.safetensors.index.json`) under the hub's names, converted to the
//! model's dtype and device; or random weights for a model built from its
//! config alone. Saving writes shards plus an index that transformers loads.

use anyhow::{Context, Result, anyhow, bail, ensure};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use tch::{Device, Kind, Tensor};

/// How a parameter starts when there are no weights to load.
#[derive(Clone, Copy, Debug)]
pub enum Init {
    /// Normal(0, initializer_range): linear and embedding weights.
    Normal,
    /// Norm weights.
    Ones,
    /// Biases.
    Zeros,
}

/// Where a model's parameters come from.
pub enum Source {
    Loaded(BTreeMap<String, Tensor>),
    /// Normal(0, std) weights drawn from a stream per (seed, name): the
    /// same model whatever else uses torch's global generator meanwhile.
    Random {
        std: f64,
        seed: u64,
    },
}

fn stream(seed: u64, name: &str) -> ChaCha8Rng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    ChaCha8Rng::seed_from_u64(h)
}

/// Uniform [lo, hi) values from the (seed, name) stream.
pub fn seeded_uniform(seed: u64, name: &str, shape: &[i64], lo: f64, hi: f64) -> Tensor {
    let mut rng = stream(seed, name);
    let n: i64 = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.random_range(lo..hi) as f32).collect();
    Tensor::from_slice(&v).view(shape)
}

/// Normal(0, std) values from the (seed, name) stream (Box–Muller).
pub fn seeded_normal(seed: u64, name: &str, shape: &[i64], std: f64) -> Tensor {
    let mut rng = stream(seed, name);
    let n: i64 = shape.iter().product();
    let mut v = Vec::with_capacity(n as usize);
    while (v.len() as i64) < n {
        let u1: f64 = 1.0 - rng.random::<f64>();
        let u2: f64 = rng.random::<f64>();
        let r = (-2.0 * u1.ln()).sqrt() * std;
        let a = std::f64::consts::TAU * u2;
        v.push((r * a.cos()) as f32);
        v.push((r * a.sin()) as f32);
    }
    v.truncate(n as usize);
    Tensor::from_slice(&v).view(shape)
}

/// Hands out parameters by hub name, converted to `kind` on `device`, and
/// keeps a registry of every one handed out (sharing storage).
pub struct ParamBuilder {
    source: Source,
    kind: Kind,
    device: Device,
    pub params: Vec<(String, Tensor)>,
    taken: BTreeSet<String>,
}

impl ParamBuilder {
    pub fn new(source: Source, kind: Kind, device: Device) -> Self {
        Self {
            source,
            kind,
            device,
            params: Vec::new(),
            taken: BTreeSet::new(),
        }
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn device(&self) -> Device {
        self.device
    }

    /// The parameter `name` of shape `shape`: loaded (shape checked) or random.
    pub fn get(&mut self, name: &str, shape: &[i64], init: Init) -> Result<Tensor> {
        let t = match &mut self.source {
            Source::Loaded(map) => {
                let t = map
                    .remove(name)
                    .ok_or_else(|| anyhow!("weights: tensor {name} is missing"))?;
                ensure!(
                    t.size() == shape,
                    "weights: tensor {name} has shape {:?}, the config implies {shape:?}",
                    t.size()
                );
                ensure!(
                    matches!(
                        t.kind(),
                        Kind::Float | Kind::BFloat16 | Kind::Half | Kind::Double
                    ),
                    "weights: tensor {name} has dtype {:?}, not a float type",
                    t.kind()
                );
                let t = t.to_kind(self.kind).to_device(self.device);
                // A NaN would only show later, as skipped steps. Checked on
                // the device: a 7B model's weights take ~22 s on two CPU cores.
                ensure!(
                    t.isfinite().all().int64_value(&[]) == 1,
                    "weights: tensor {name} holds NaN or infinite values (as {:?})",
                    self.kind
                );
                t
            }
            Source::Random { std, seed } => {
                let opts = (Kind::Float, Device::Cpu);
                let t = match init {
                    Init::Normal => seeded_normal(*seed, name, shape, *std),
                    Init::Ones => Tensor::ones(shape, opts),
                    Init::Zeros => Tensor::zeros(shape, opts),
                };
                t.to_kind(self.kind).to_device(self.device)
            }
        };
        self.taken.insert(name.to_string());
        self.params.push((name.to_string(), t.shallow_clone()));
        Ok(t)
    }

    /// Whether the loaded weights hold `name` (e.g. an untied `lm_head`).
    pub fn has(&self, name: &str) -> bool {
        match &self.source {
            Source::Loaded(map) => map.contains_key(name),
            Source::Random { .. } => false,
        }
    }

    /// Fails on weights nobody asked for: a config that does not fit them.
    pub fn finish(self) -> Result<Vec<(String, Tensor)>> {
        if let Source::Loaded(map) = &self.source {
            let left: Vec<&String> = map.keys().collect();
            if !left.is_empty() {
                bail!(
                    "weights: {} tensors the config has no place for, e.g. {}",
                    left.len(),
                    left.iter()
                        .take(3)
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
        }
        Ok(self.params)
    }
}

/// The in-memory names transformers 5.x uses, mapped back to the hub's.
fn hub_name(name: &str) -> String {
    if let Some(rest) = name.strip_prefix("model.language_model.") {
        format!("model.{rest}")
    } else if let Some(rest) = name.strip_prefix("model.visual.") {
        format!("visual.{rest}")
    } else {
        name.to_string()
    }
}

/// The safetensors files of a model dir: the index's shards, or the single file.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let index = dir.join("model.safetensors.index.json");
    if index.exists() {
        let text = std::fs::read_to_string(&index)
            .with_context(|| format!("reading {}", index.display()))?;
        let v: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("parsing {}", index.display()))?;
        let map = v
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| anyhow!("{}: no weight_map object", index.display()))?;
        let files: BTreeSet<&str> = map.values().filter_map(|f| f.as_str()).collect();
        ensure!(
            !files.is_empty(),
            "{}: weight_map is empty",
            index.display()
        );
        return Ok(files.into_iter().map(|f| dir.join(f)).collect());
    }
    let single = dir.join("model.safetensors");
    ensure!(
        single.exists(),
        "{}: no model.safetensors or model.safetensors.index.json",
        dir.display()
    );
    Ok(vec![single])
}

/// Every tensor of a model dir, by hub name, on the CPU in its stored dtype.
pub fn load_dir(dir: &Path) -> Result<BTreeMap<String, Tensor>> {
    let mut out = BTreeMap::new();
    for file in weight_files(dir)? {
        ensure!(
            file.exists(),
            "weights: shard {} is missing",
            file.display()
        );
        let tensors = Tensor::read_safetensors(&file)
            .map_err(|e| anyhow!("reading {}: {e}", file.display()))?;
        for (name, t) in tensors {
            let name = hub_name(&name);
            ensure!(
                out.insert(name.clone(), t).is_none(),
                "weights: tensor {name} appears twice"
            );
        }
    }
    Ok(out)
}

/// Largest shard written by [`save_dir`].
pub const SHARD_BYTES: usize = 2 << 30;

/// Writes `tensors` (hub names) as safetensors in `dir`: one
/// `model.safetensors`, or shards plus `model.safetensors.index.json` when
/// they pass `shard_bytes`. Tensors are copied to the CPU one shard at a time.
pub fn save_dir(tensors: &[(String, Tensor)], dir: &Path, shard_bytes: usize) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut shards: Vec<Vec<usize>> = vec![Vec::new()];
    let mut size = 0usize;
    let mut total = 0usize;
    for (i, (_, t)) in tensors.iter().enumerate() {
        let bytes = t.numel() * t.kind().elt_size_in_bytes();
        if size + bytes > shard_bytes && !shards.last().is_some_and(|s| s.is_empty()) {
            shards.push(Vec::new());
            size = 0;
        }
        shards.last_mut().expect("one shard").push(i);
        size += bytes;
        total += bytes;
    }
    let n = shards.len();
    let mut weight_map = serde_json::Map::new();
    for (k, shard) in shards.iter().enumerate() {
        let file = if n == 1 {
            "model.safetensors".to_string()
        } else {
            format!("model-{:05}-of-{n:05}.safetensors", k + 1)
        };
        let cpu: Vec<(&str, Tensor)> = shard
            .iter()
            .map(|&i| {
                let (name, t) = &tensors[i];
                weight_map.insert(name.clone(), file.clone().into());
                (
                    name.as_str(),
                    t.detach().to_device(Device::Cpu).contiguous(),
                )
            })
            .collect();
        let path = dir.join(&file);
        Tensor::write_safetensors(&cpu, &path)
            .map_err(|e| anyhow!("writing {}: {e}", path.display()))?;
    }
    if n > 1 {
        let index =
            serde_json::json!({"metadata": {"total_size": total}, "weight_map": weight_map});
        let path = dir.join("model.safetensors.index.json");
        std::fs::write(&path, serde_json::to_string_pretty(&index)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_save_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let tensors: Vec<(String, Tensor)> = (0..5)
            .map(|i| {
                (
                    format!("model.layers.{i}.w"),
                    Tensor::arange(100, (Kind::Float, Device::Cpu)) + i as f64,
                )
            })
            .collect();
        save_dir(&tensors, dir.path(), 900).unwrap();
        assert!(dir.path().join("model.safetensors.index.json").exists());
        assert_eq!(weight_files(dir.path()).unwrap().len(), 3);
        let back = load_dir(dir.path()).unwrap();
        assert_eq!(back.len(), 5);
        for (name, t) in &tensors {
            assert!(back[name].equal(t), "{name}");
        }
    }

    #[test]
    fn missing_and_misshapen_tensors_are_named() {
        let mut map = BTreeMap::new();
        map.insert(
            "a".to_string(),
            Tensor::zeros([2, 3], (Kind::Float, Device::Cpu)),
        );
        map.insert(
            "extra".to_string(),
            Tensor::zeros([1], (Kind::Float, Device::Cpu)),
        );
        let nan = Tensor::zeros([4], (Kind::Float, Device::Cpu));
        let _ = nan.get(2).fill_(f64::NAN);
        map.insert("nan".to_string(), nan);
        // Finite in f32, infinite in f16.
        map.insert("big".to_string(), Tensor::from_slice(&[1e6f32]));
        let mut b = ParamBuilder::new(Source::Loaded(map), Kind::Float, Device::Cpu);
        let err = b.get("a", &[3, 2], Init::Zeros).unwrap_err().to_string();
        assert!(err.contains("tensor a has shape [2, 3]"), "{err}");
        let err = b.get("b", &[1], Init::Zeros).unwrap_err().to_string();
        assert!(err.contains("tensor b is missing"), "{err}");
        let err = b.get("nan", &[4], Init::Zeros).unwrap_err().to_string();
        assert!(
            err.contains("tensor nan holds NaN or infinite values"),
            "{err}"
        );
        assert!(b.get("big", &[1], Init::Zeros).is_ok());
        let mut half = ParamBuilder::new(
            Source::Loaded(BTreeMap::from([(
                "big".to_string(),
                Tensor::from_slice(&[1e6f32]),
            )])),
            Kind::Half,
            Device::Cpu,
        );
        let err = half.get("big", &[1], Init::Zeros).unwrap_err().to_string();
        assert!(err.contains("(as Half)"), "{err}");
        let err = b.finish().unwrap_err().to_string();
        assert!(err.contains("extra"), "{err}");
    }

    #[test]
    fn in_memory_names_map_to_the_hub() {
        assert_eq!(
            hub_name("model.language_model.norm.weight"),
            "model.norm.weight"
        );
        assert_eq!(
            hub_name("model.visual.merger.ln_q.weight"),
            "visual.merger.ln_q.weight"
        );
        assert_eq!(hub_name("lm_head.weight"), "lm_head.weight");
    }
}
