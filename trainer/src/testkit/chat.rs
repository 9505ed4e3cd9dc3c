//! A character-level stand-in for the Qwen chat template: every Unicode
//! scalar is one token, and the template's special tokens sit above the
//! Unicode range. It frames turns the way the real template does, so
//! response masks can be checked token by token.

use crate::policy::{Segment, Transcript};
use anyhow::Result;

pub const IM_START: i64 = 0x110000;
pub const IM_END: i64 = 0x110001;
pub const VISION_START: i64 = 0x110002;
pub const VISION_END: i64 = 0x110003;
pub const IMAGE_PAD: i64 = 0x110004;
/// Vision tokens per image (a real processor derives this from the size).
pub const PADS_PER_IMAGE: usize = 4;

pub struct ChatTokens;

impl ChatTokens {
    pub fn text(s: &str) -> Vec<i64> {
        s.chars().map(|c| c as i64).collect()
    }

    pub fn decode(ids: &[i64]) -> String {
        ids.iter()
            .filter_map(|&i| u32::try_from(i).ok().and_then(char::from_u32))
            .collect()
    }

    /// `<|im_start|>user\n … <|im_end|>\n`, all masked out. Images must be
    /// real images, as with a real processor.
    pub fn user_turn(t: &mut Transcript, user: &[Segment]) -> Result<()> {
        let mut ids = vec![IM_START];
        ids.extend(Self::text("user\n"));
        for seg in user {
            match seg {
                Segment::Text(s) => ids.extend(Self::text(s)),
                Segment::Image(bytes) => {
                    crate::data::check_image(bytes)
                        .map_err(|e| anyhow::anyhow!("bad image in user turn: {e}"))?;
                    ids.push(VISION_START);
                    ids.extend(std::iter::repeat_n(IMAGE_PAD, PADS_PER_IMAGE));
                    ids.push(VISION_END);
                    t.images.push(bytes.clone());
                }
            }
        }
        ids.push(IM_END);
        ids.extend(Self::text("\n"));
        Self::push(t, &ids, None);
        Ok(())
    }

    /// `<|im_start|>assistant\n`, the generation prompt (masked out).
    pub fn assistant_prefix(t: &mut Transcript) {
        let mut ids = vec![IM_START];
        ids.extend(Self::text("assistant\n"));
        Self::push(t, &ids, None);
    }

    /// Generated ids (mask 1) with their log-probs; after `<|im_end|>` the
    /// template's newline (mask 0).
    pub fn generated(t: &mut Transcript, ids: &[i64], logprobs: &[f32]) {
        Self::push(t, ids, Some(logprobs));
        if ids.last() == Some(&IM_END) {
            Self::push(t, &Self::text("\n"), None);
        }
    }

    /// A teacher-forced assistant turn: prefix, `text` + `<|im_end|>` (mask 1,
    /// log-prob 0.0), newline.
    pub fn forced(t: &mut Transcript, text: &str) {
        Self::assistant_prefix(t);
        let mut ids = Self::text(text);
        ids.push(IM_END);
        Self::generated(t, &ids, &vec![0.0; ids.len()]);
    }

    fn push(t: &mut Transcript, ids: &[i64], logprobs: Option<&[f32]>) {
        t.tokens.extend_from_slice(ids);
        match logprobs {
            Some(lp) => {
                t.response_mask.extend(std::iter::repeat_n(1, ids.len()));
                t.sample_logprobs.extend_from_slice(lp);
            }
            None => {
                t.response_mask.extend(std::iter::repeat_n(0, ids.len()));
                t.sample_logprobs
                    .extend(std::iter::repeat_n(0.0, ids.len()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_forced_turn_is_masked_like_a_generated_one() {
        let mut t = Transcript::default();
        ChatTokens::user_turn(&mut t, &[Segment::Text("q".into())]).unwrap();
        let before = t.tokens.len();
        ChatTokens::forced(&mut t, "ab");
        let prefix = 1 + "assistant\n".len();
        let mask = &t.response_mask[before..];
        assert_eq!(mask.len(), prefix + 3 + 1);
        assert!(mask[..prefix].iter().all(|&m| m == 0));
        assert_eq!(&mask[prefix..prefix + 3], &[1, 1, 1], "a, b, <|im_end|>");
        assert_eq!(mask[prefix + 3], 0, "the template's newline");
        assert_eq!(t.tokens[before + prefix + 2], IM_END);
    }
}
