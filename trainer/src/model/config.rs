//! `config.json` of a Qwen2.5-VL checkpoint, read straight from the HF file.
//!
//! Two layouts exist: the flat one of the published checkpoints (decoder
//! fields at the top level, `rope_scaling: {type: "mrope", mrope_section}`)
//! and the nested one transformers 5.x writes (`text_config` with
//! `rope_parameters`). Both parse into [`QwenVlConfig`].

use anyhow::{Context, Result, ensure};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// The language model's settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    #[serde(default)]
    pub num_key_value_heads: Option<usize>,
    #[serde(default = "default_rms_eps")]
    pub rms_norm_eps: f64,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
    /// The flat layout's name for `rope_parameters`.
    #[serde(default)]
    pub rope_scaling: Option<RopeParameters>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub tie_word_embeddings: Option<bool>,
    #[serde(default)]
    pub use_sliding_window: bool,
}

#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct RopeParameters {
    #[serde(default)]
    pub rope_type: Option<String>,
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
    #[serde(default)]
    pub rope_theta: Option<f64>,
    #[serde(default)]
    pub mrope_section: Option<Vec<usize>>,
}

/// The vision tower's settings.
#[derive(Clone, Debug, PartialEq, Deserialize)]
pub struct VisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub out_hidden_size: usize,
    /// Published checkpoints also carry `spatial_patch_size` (same value).
    #[serde(default = "default_patch")]
    pub patch_size: usize,
    #[serde(default = "default_merge")]
    pub spatial_merge_size: usize,
    #[serde(default = "default_merge")]
    pub temporal_patch_size: usize,
    #[serde(default = "default_window")]
    pub window_size: usize,
    #[serde(default)]
    pub fullatt_block_indexes: Vec<usize>,
    /// `in_chans` in the published checkpoints (see [`QwenVlConfig::from_value`]).
    #[serde(default = "default_channels")]
    pub in_channels: usize,
    #[serde(default)]
    pub in_chans: Option<usize>,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default)]
    pub rope_parameters: Option<RopeParameters>,
}

fn default_rms_eps() -> f64 {
    1e-6
}
fn default_act() -> String {
    "silu".into()
}
fn default_patch() -> usize {
    14
}
fn default_merge() -> usize {
    2
}
fn default_window() -> usize {
    112
}
fn default_channels() -> usize {
    3
}

#[derive(Deserialize)]
struct RawTop {
    #[serde(default)]
    model_type: Option<String>,
    #[serde(default)]
    text_config: Option<Value>,
    vision_config: VisionConfig,
    #[serde(default = "default_image_token")]
    image_token_id: i64,
    #[serde(default = "default_video_token")]
    video_token_id: i64,
    #[serde(default = "default_vision_start")]
    vision_start_token_id: i64,
    #[serde(default = "default_vision_end")]
    vision_end_token_id: i64,
    #[serde(default)]
    tie_word_embeddings: Option<bool>,
}

fn default_image_token() -> i64 {
    151655
}
fn default_video_token() -> i64 {
    151656
}
fn default_vision_start() -> i64 {
    151652
}
fn default_vision_end() -> i64 {
    151653
}

/// A whole Qwen2.5-VL configuration, normalised from either layout.
#[derive(Clone, Debug, PartialEq)]
pub struct QwenVlConfig {
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub image_token_id: i64,
    pub video_token_id: i64,
    pub vision_start_token_id: i64,
    pub vision_end_token_id: i64,
    pub tie_word_embeddings: bool,
    /// M-RoPE split of head_dim / 2 over (t, h, w).
    pub mrope_section: [usize; 3],
    pub rope_theta: f64,
    pub vision_rope_theta: f64,
    /// The file as read, written back on export.
    pub raw: Value,
}

impl QwenVlConfig {
    pub fn from_file(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        Self::from_json(&text).with_context(|| path.display().to_string())
    }

    pub fn from_json(text: &str) -> Result<Self> {
        let raw: Value = serde_json::from_str(text).context("config.json is not JSON")?;
        Self::from_value(raw)
    }

    pub fn from_value(raw: Value) -> Result<Self> {
        let top: RawTop = serde_path_to_error::deserialize(&raw).map_err(|e| field_error("", e))?;
        if let Some(mt) = &top.model_type {
            ensure!(
                mt == "qwen2_5_vl",
                "model_type {mt:?} is not \"qwen2_5_vl\""
            );
        }
        // Nested layout: text_config; flat layout: the top level itself.
        let text_value = top.text_config.clone().unwrap_or_else(|| raw.clone());
        let scope = if top.text_config.is_some() {
            "text_config"
        } else {
            ""
        };
        let text: TextConfig =
            serde_path_to_error::deserialize(&text_value).map_err(|e| field_error(scope, e))?;
        let rope = text
            .rope_parameters
            .clone()
            .or_else(|| text.rope_scaling.clone());
        let section = rope
            .as_ref()
            .and_then(|r| r.mrope_section.clone())
            .unwrap_or_else(|| vec![16, 24, 24]);
        ensure!(
            section.len() == 3,
            "mrope_section {section:?} must have 3 entries (t, h, w)"
        );
        let rope_type = rope
            .as_ref()
            .and_then(|r| r.rope_type.clone().or_else(|| r.kind.clone()))
            .unwrap_or_else(|| "default".into());
        ensure!(
            rope_type == "default" || rope_type == "mrope",
            "rope type {rope_type:?} is not supported (only default/mrope)"
        );
        let rope_theta = rope
            .as_ref()
            .and_then(|r| r.rope_theta)
            .or(text.rope_theta)
            .unwrap_or(1_000_000.0);
        let vision_rope_theta = top
            .vision_config
            .rope_parameters
            .as_ref()
            .and_then(|r| r.rope_theta)
            .unwrap_or(10_000.0);
        // transformers 5 also honours a tie set only inside text_config.
        let tie =
            top.tie_word_embeddings.unwrap_or(false) || text.tie_word_embeddings.unwrap_or(false);
        let mut vision = top.vision_config;
        if let Some(c) = vision.in_chans.take() {
            vision.in_channels = c;
        }
        let cfg = Self {
            mrope_section: [section[0], section[1], section[2]],
            rope_theta,
            vision_rope_theta,
            tie_word_embeddings: tie,
            image_token_id: top.image_token_id,
            video_token_id: top.video_token_id,
            vision_start_token_id: top.vision_start_token_id,
            vision_end_token_id: top.vision_end_token_id,
            vision,
            text,
            raw,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn head_dim(&self) -> usize {
        self.text.hidden_size / self.text.num_attention_heads
    }

    pub fn num_kv_heads(&self) -> usize {
        self.text
            .num_key_value_heads
            .unwrap_or(self.text.num_attention_heads)
    }

    pub fn vision_head_dim(&self) -> usize {
        self.vision.hidden_size / self.vision.num_heads
    }

    /// Vision tokens per image side unit: patches are merged `merge × merge`.
    pub fn merge_unit(&self) -> usize {
        self.vision.spatial_merge_size * self.vision.spatial_merge_size
    }

    fn validate(&self) -> Result<()> {
        let t = &self.text;
        ensure!(
            t.num_attention_heads > 0 && t.hidden_size.is_multiple_of(t.num_attention_heads),
            "hidden_size {} is not a multiple of num_attention_heads {}",
            t.hidden_size,
            t.num_attention_heads
        );
        let kv = self.num_kv_heads();
        ensure!(
            kv > 0 && t.num_attention_heads.is_multiple_of(kv),
            "num_attention_heads {} is not a multiple of num_key_value_heads {kv}",
            t.num_attention_heads
        );
        ensure!(
            self.mrope_section.iter().sum::<usize>() * 2 == self.head_dim(),
            "mrope_section {:?} must add up to head_dim / 2 = {}",
            self.mrope_section,
            self.head_dim() / 2
        );
        ensure!(
            t.hidden_act == "silu",
            "hidden_act {:?} is not supported (silu only)",
            t.hidden_act
        );
        ensure!(!t.use_sliding_window, "use_sliding_window is not supported");
        let v = &self.vision;
        ensure!(
            v.num_heads > 0 && v.hidden_size.is_multiple_of(v.num_heads),
            "vision_config.hidden_size {} is not a multiple of vision_config.num_heads {}",
            v.hidden_size,
            v.num_heads
        );
        ensure!(
            self.vision_head_dim().is_multiple_of(4),
            "vision head dim {} must be a multiple of 4 (2-D rotary)",
            self.vision_head_dim()
        );
        ensure!(
            v.out_hidden_size == t.hidden_size,
            "vision_config.out_hidden_size {} differs from the decoder's hidden_size {}",
            v.out_hidden_size,
            t.hidden_size
        );
        ensure!(
            v.fullatt_block_indexes.iter().all(|&i| i < v.depth),
            "vision_config.fullatt_block_indexes {:?} reach past depth {}",
            v.fullatt_block_indexes,
            v.depth
        );
        ensure!(
            v.window_size
                .is_multiple_of(v.spatial_merge_size * v.patch_size)
                && v.window_size >= v.spatial_merge_size * v.patch_size,
            "vision_config.window_size {} must be a multiple of patch_size × spatial_merge_size",
            v.window_size
        );
        ensure!(
            v.hidden_act == "silu",
            "vision_config.hidden_act {:?} is not supported (silu only)",
            v.hidden_act
        );
        for (name, id) in [
            ("image_token_id", self.image_token_id),
            ("vision_start_token_id", self.vision_start_token_id),
            ("vision_end_token_id", self.vision_end_token_id),
        ] {
            ensure!(
                id >= 0 && (id as usize) < t.vocab_size,
                "{name} {id} is outside the vocabulary (vocab_size {})",
                t.vocab_size
            );
        }
        Ok(())
    }
}

/// Where in config.json a value is wrong: a field's dotted path, or the
/// table itself (`scope`) when a field is missing.
fn field_error(scope: &str, e: serde_path_to_error::Error<serde_json::Error>) -> anyhow::Error {
    let path = e.path().to_string();
    let at = match (scope.is_empty(), path.as_str()) {
        (true, ".") => "the top level".to_string(),
        (false, ".") => format!("`{scope}`"),
        (true, p) => format!("field `{p}`"),
        (false, p) => format!("field `{scope}.{p}`"),
    };
    anyhow::anyhow!("{at}: {}", e.inner())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn vision() -> Value {
        json!({"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
               "out_hidden_size": 64, "fullatt_block_indexes": [1], "in_chans": 3,
               "spatial_patch_size": 14, "window_size": 112, "tokens_per_second": 2})
    }

    #[test]
    fn flat_published_layout() {
        let cfg = QwenVlConfig::from_value(json!({
            "model_type": "qwen2_5_vl", "vocab_size": 256, "hidden_size": 64,
            "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
            "num_key_value_heads": 2, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
            "image_token_id": 200, "vision_start_token_id": 198, "vision_end_token_id": 199,
            "tie_word_embeddings": true, "vision_config": vision()
        }))
        .unwrap();
        assert_eq!(cfg.mrope_section, [2, 3, 3]);
        assert_eq!(cfg.rope_theta, 1e6);
        assert_eq!(cfg.num_kv_heads(), 2);
        assert!(cfg.tie_word_embeddings);
        assert_eq!(cfg.vision.patch_size, 14);
    }

    /// Qwen2.5-VL-7B-Instruct's config.json as published.
    #[test]
    fn the_published_7b_config() {
        let cfg = QwenVlConfig::from_json(r#"{
            "architectures": ["Qwen2_5_VLForConditionalGeneration"], "attention_dropout": 0.0,
            "bos_token_id": 151643, "eos_token_id": 151645, "vision_start_token_id": 151652,
            "vision_end_token_id": 151653, "vision_token_id": 151654, "image_token_id": 151655,
            "video_token_id": 151656, "hidden_act": "silu", "hidden_size": 3584,
            "initializer_range": 0.02, "intermediate_size": 18944, "max_position_embeddings": 128000,
            "max_window_layers": 28, "model_type": "qwen2_5_vl", "num_attention_heads": 28,
            "num_hidden_layers": 28, "num_key_value_heads": 4, "rms_norm_eps": 1e-06,
            "rope_theta": 1000000.0, "sliding_window": 32768, "tie_word_embeddings": false,
            "torch_dtype": "bfloat16", "transformers_version": "4.41.2", "use_cache": true,
            "use_sliding_window": false,
            "vision_config": {"depth": 32, "hidden_act": "silu", "hidden_size": 1280,
                "intermediate_size": 3420, "num_heads": 16, "in_chans": 3, "out_hidden_size": 3584,
                "patch_size": 14, "spatial_merge_size": 2, "spatial_patch_size": 14,
                "window_size": 112, "fullatt_block_indexes": [7, 15, 23, 31],
                "tokens_per_second": 2, "temporal_patch_size": 2},
            "rope_scaling": {"type": "mrope", "mrope_section": [16, 24, 24]},
            "vocab_size": 152064
        }"#)
        .unwrap();
        assert_eq!(cfg.head_dim(), 128);
        assert_eq!(cfg.num_kv_heads(), 4);
        assert_eq!(cfg.mrope_section, [16, 24, 24]);
        assert_eq!(cfg.rope_theta, 1e6);
        assert_eq!(cfg.vision.in_channels, 3);
        assert_eq!(cfg.vision.fullatt_block_indexes, vec![7, 15, 23, 31]);
        assert_eq!(cfg.image_token_id, 151655);
    }

    #[test]
    fn nested_transformers5_layout() {
        let cfg = QwenVlConfig::from_value(json!({
            "model_type": "qwen2_5_vl", "image_token_id": 200,
            "vision_start_token_id": 198, "vision_end_token_id": 199,
            "text_config": {"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                                    "mrope_section": [2, 3, 3]}},
            "vision_config": vision()
        }))
        .unwrap();
        assert_eq!(cfg.rope_theta, 1e4);
        assert!(!cfg.tie_word_embeddings);
        assert_eq!(cfg.text.num_hidden_layers, 2);
    }

    #[test]
    fn bad_configs_name_the_field() {
        let err = QwenVlConfig::from_value(json!({
            "model_type": "qwen2_5_vl",
            "text_config": {"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128,
                "num_hidden_layers": 2, "num_attention_heads": 4,
                "rope_parameters": {"mrope_section": [4, 4, 4]}},
            "image_token_id": 200, "vision_start_token_id": 198, "vision_end_token_id": 199,
            "vision_config": vision()
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("mrope_section"), "{err}");
        let err = QwenVlConfig::from_value(json!({
            "model_type": "qwen2_5_vl",
            "text_config": {"vocab_size": "many"}, "vision_config": vision()
        }))
        .unwrap_err()
        .to_string();
        assert!(err.contains("field `text_config.vocab_size`"), "{err}");
        // A missing field names its table once, not as `text_config..`.
        let err = QwenVlConfig::from_value(json!({
            "model_type": "qwen2_5_vl",
            "text_config": {"vocab_size": 256}, "vision_config": vision()
        }))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("`text_config`: missing field `hidden_size`"),
            "{err}"
        );
    }
}
