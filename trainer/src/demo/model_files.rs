//! The tiny model's HF files: `config.json` (Qwen2.5-VL, the nested layout
//! transformers 5.x writes), `preprocessor_config.json` and
//! `generation_config.json`. Token ids come from the world's tokenizer.

use super::tokenizer::token_id;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokenizers::Tokenizer;

/// Sizes of the tiny policy, chosen for CPU training in minutes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TinyModelConfig {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    /// Must add up to head_dim / 2.
    pub mrope_section: [usize; 3],
    pub vision_depth: usize,
    pub vision_hidden_size: usize,
    pub vision_intermediate_size: usize,
    pub vision_num_heads: usize,
    pub vision_fullatt_block_indexes: Vec<usize>,
    /// Image pixel budget of the processor: a 56×56 image is 4 vision tokens.
    pub min_pixels: usize,
    pub max_pixels: usize,
    pub max_position_embeddings: usize,
    /// `lm_head` shares the input embeddings (as Qwen2.5-VL-3B does): a copy
    /// head then reproduces any token it attends to, also a name no training
    /// question holds, which an untied head must learn token by token.
    pub tie_word_embeddings: bool,
}

impl Default for TinyModelConfig {
    fn default() -> Self {
        Self {
            hidden_size: 128,
            intermediate_size: 384,
            num_hidden_layers: 4,
            num_attention_heads: 4,
            num_key_value_heads: 2,
            mrope_section: [4, 6, 6],
            vision_depth: 2,
            vision_hidden_size: 64,
            vision_intermediate_size: 128,
            vision_num_heads: 2,
            vision_fullatt_block_indexes: vec![1],
            min_pixels: 56 * 56,
            max_pixels: 84 * 84,
            max_position_embeddings: 4096,
            tie_word_embeddings: true,
        }
    }
}

impl TinyModelConfig {
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.num_attention_heads > 0
                && self.hidden_size.is_multiple_of(self.num_attention_heads),
            "model.hidden_size {} is not a multiple of model.num_attention_heads {}",
            self.hidden_size,
            self.num_attention_heads
        );
        anyhow::ensure!(
            self.num_key_value_heads > 0
                && self
                    .num_attention_heads
                    .is_multiple_of(self.num_key_value_heads),
            "model.num_attention_heads must be a multiple of model.num_key_value_heads"
        );
        let half_head = self.hidden_size / self.num_attention_heads / 2;
        anyhow::ensure!(
            self.mrope_section.iter().sum::<usize>() == half_head,
            "model.mrope_section {:?} must add up to head_dim / 2 = {half_head}",
            self.mrope_section
        );
        anyhow::ensure!(
            self.vision_num_heads > 0
                && self
                    .vision_hidden_size
                    .is_multiple_of(self.vision_num_heads),
            "model.vision_hidden_size must be a multiple of model.vision_num_heads"
        );
        anyhow::ensure!(
            self.vision_fullatt_block_indexes
                .iter()
                .all(|&i| i < self.vision_depth),
            "model.vision_fullatt_block_indexes must be below model.vision_depth {}",
            self.vision_depth
        );
        anyhow::ensure!(
            self.min_pixels >= 28 * 28 && self.min_pixels <= self.max_pixels,
            "model.min_pixels must be at least 784 and at most model.max_pixels"
        );
        Ok(())
    }

    /// `config.json`; the vocabulary is the tokenizer's, padded to a multiple of 64.
    pub fn config_json(&self, tokenizer: &Tokenizer) -> anyhow::Result<Value> {
        self.validate()?;
        let vocab = tokenizer.get_vocab_size(true).div_ceil(64) * 64;
        let id = |t: &str| token_id(tokenizer, t);
        let (bos, eos) = (id("<|endoftext|>")?, id("<|im_end|>")?);
        Ok(json!({
            "architectures": ["Qwen2_5_VLForConditionalGeneration"],
            "model_type": "qwen2_5_vl",
            "image_token_id": id("<|image_pad|>")?,
            "video_token_id": id("<|video_pad|>")?,
            "vision_start_token_id": id("<|vision_start|>")?,
            "vision_end_token_id": id("<|vision_end|>")?,
            "tie_word_embeddings": self.tie_word_embeddings,
            "text_config": {
                "model_type": "qwen2_5_vl_text",
                "vocab_size": vocab,
                "hidden_size": self.hidden_size,
                "intermediate_size": self.intermediate_size,
                "num_hidden_layers": self.num_hidden_layers,
                "num_attention_heads": self.num_attention_heads,
                "num_key_value_heads": self.num_key_value_heads,
                "hidden_act": "silu",
                "max_position_embeddings": self.max_position_embeddings,
                "rms_norm_eps": 1e-6,
                "initializer_range": 0.02,
                "attention_dropout": 0.0,
                "use_cache": true,
                "use_sliding_window": false,
                "sliding_window": null,
                "max_window_layers": self.num_hidden_layers,
                "layer_types": vec!["full_attention"; self.num_hidden_layers],
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "mrope_section": self.mrope_section},
                "bos_token_id": bos,
                "eos_token_id": eos,
                "pad_token_id": bos,
                "tie_word_embeddings": self.tie_word_embeddings,
            },
            "vision_config": {
                "model_type": "qwen2_5_vl_vision",
                "depth": self.vision_depth,
                "hidden_size": self.vision_hidden_size,
                "intermediate_size": self.vision_intermediate_size,
                "num_heads": self.vision_num_heads,
                "out_hidden_size": self.hidden_size,
                "hidden_act": "silu",
                "in_channels": 3,
                "patch_size": 14,
                "spatial_merge_size": 2,
                "temporal_patch_size": 2,
                "window_size": 112,
                "fullatt_block_indexes": self.vision_fullatt_block_indexes,
                "tokens_per_second": 4,
                "initializer_range": 0.02,
            },
        }))
    }

    /// Qwen2-VL image processor settings: CLIP mean/std, patch 14, merge 2.
    pub fn preprocessor_json(&self) -> Value {
        json!({
            "image_processor_type": "Qwen2VLImageProcessor",
            "processor_class": "Qwen2_5_VLProcessor",
            "do_resize": true,
            "do_rescale": true,
            "rescale_factor": 1.0 / 255.0,
            "do_normalize": true,
            "do_convert_rgb": true,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711],
            "min_pixels": self.min_pixels,
            "max_pixels": self.max_pixels,
            "size": {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
            "patch_size": 14,
            "temporal_patch_size": 2,
            "merge_size": 2,
        })
    }

    pub fn generation_json(&self, tokenizer: &Tokenizer) -> anyhow::Result<Value> {
        let (bos, eos) = (
            token_id(tokenizer, "<|endoftext|>")?,
            token_id(tokenizer, "<|im_end|>")?,
        );
        Ok(
            json!({"bos_token_id": bos, "eos_token_id": [eos, bos], "pad_token_id": bos, "do_sample": true, "temperature": 1.0}),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mrope_section_must_fit_the_head() {
        let bad = TinyModelConfig {
            mrope_section: [4, 4, 4],
            ..TinyModelConfig::default()
        };
        let err = bad.validate().unwrap_err().to_string();
        assert!(err.contains("model.mrope_section"), "{err}");
        TinyModelConfig::default().validate().unwrap();
    }
}
