//! One training/evaluation question, as every loader produces it.

use crate::reward::GoldAnswers;

#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// Where it came from, for logs and errors: `file.parquet#12`.
    pub id: String,
    /// The question alone; the instruction prompt is added by the rollout.
    pub question: String,
    /// Encoded images (JPEG/PNG), at least one; the first is the one image
    /// search looks up.
    pub images: Vec<Vec<u8>>,
    /// A public URL of the first image (`image_urls`), if the row has one.
    pub image_url: Option<String>,
    pub gold: GoldAnswers,
    pub data_source: String,
}

/// Strips the `<image>` placeholders some datasets keep in the question text.
pub fn clean_question(text: &str) -> String {
    text.replace("<image>", " ")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Qwen2.5-VL's processor refuses images more elongated than this.
pub const MAX_ASPECT_RATIO: f64 = 200.0;

/// A cheap check that bytes are an image the processor can open: the format
/// is recognised, the header gives non-zero dimensions within the processor's
/// aspect ratio and the decoder's memory limit, and the file is not cut short.
/// Whatever the rollout would refuse is caught here, where the row is known.
pub fn check_image(bytes: &[u8]) -> Result<(u32, u32), String> {
    use image::ImageDecoder;
    let reader = image::ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| format!("unreadable image: {e}"))?;
    let Some(format) = reader.format() else {
        return Err(format!(
            "not an image (unrecognised format, {} bytes)",
            bytes.len()
        ));
    };
    check_complete(format, bytes)?;
    let decoder = reader
        .into_decoder()
        .map_err(|e| format!("corrupt image: {e}"))?;
    let (w, h) = decoder.dimensions();
    if w == 0 || h == 0 {
        return Err(format!("image has empty size {w}x{h}"));
    }
    let ratio = f64::from(w.max(h)) / f64::from(w.min(h));
    if ratio > MAX_ASPECT_RATIO {
        return Err(format!(
            "image {w}x{h}: aspect ratio {ratio:.1} is above {MAX_ASPECT_RATIO}"
        ));
    }
    // The limit `image::load_from_memory` decodes under.
    let limit = image::Limits::default().max_alloc.unwrap_or(u64::MAX);
    if decoder.total_bytes() > limit {
        return Err(format!(
            "image {w}x{h} needs {} MiB to decode, above the decoder's {} MiB limit",
            decoder.total_bytes() >> 20,
            limit >> 20
        ));
    }
    Ok((w, h))
}

/// Refuses a question that spells a special token (`<|image_pad|>`,
/// `<|im_end|>`, …): the tokenizer would read it as that token, adding image
/// slots or ending the turn early.
pub fn check_question(question: &str) -> Result<(), String> {
    for (start, _) in question.match_indices("<|") {
        let rest = &question[start + 2..];
        let Some(len) = rest.find("|>") else { break };
        let name = &rest[..len];
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(format!(
                "the question spells the special token \"<|{name}|>\""
            ));
        }
    }
    Ok(())
}

/// `image` decodes a PNG or JPEG cut short without an error (the missing
/// rows come out grey), so a truncated download would train silently. The
/// end markers say whether the file is whole.
fn check_complete(format: image::ImageFormat, bytes: &[u8]) -> Result<(), String> {
    let last = |marker: &[u8]| bytes.windows(marker.len()).rposition(|w| w == marker);
    match format {
        // The IEND chunk's type and its fixed CRC.
        image::ImageFormat::Png if last(b"IEND\xae\x42\x60\x82").is_none() => Err(format!(
            "truncated image: a PNG without its IEND chunk ({} bytes)",
            bytes.len()
        )),
        // End of image after the last start of scan (markers cannot occur in
        // the entropy-coded data, and an EXIF thumbnail's come before both).
        image::ImageFormat::Jpeg => match (last(&[0xFF, 0xDA]), last(&[0xFF, 0xD9])) {
            (Some(sos), Some(eoi)) if eoi > sos => Ok(()),
            _ => Err(format!(
                "truncated image: a JPEG without an end-of-image marker after its last scan ({} bytes)",
                bytes.len()
            )),
        },
        _ => Ok(()),
    }
}

/// Parses `candidate_answers`: a JSON list of strings (the seed stores it as a
/// JSON string); empty or null means none.
pub fn parse_candidates(raw: Option<&str>) -> Result<Vec<String>, String> {
    let Some(raw) = raw.map(str::trim).filter(|s| !s.is_empty()) else {
        return Ok(Vec::new());
    };
    let value: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| format!("candidate_answers is not JSON ({e}): {raw:.60}"))?;
    candidates_from_json(&value)
}

pub fn candidates_from_json(value: &serde_json::Value) -> Result<Vec<String>, String> {
    match value {
        serde_json::Value::Null => Ok(Vec::new()),
        serde_json::Value::Array(items) => items
            .iter()
            .map(|v| match v {
                serde_json::Value::String(s) => Ok(s.clone()),
                serde_json::Value::Number(n) => Ok(n.to_string()),
                other => Err(format!("candidate_answers holds a non-string: {other}")),
            })
            .collect(),
        other => Err(format!("candidate_answers is not a list: {other:.60}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn questions_lose_image_placeholders() {
        assert_eq!(clean_question("<image>\nWhat is  this?"), "What is this?");
    }

    #[test]
    fn questions_that_spell_special_tokens_are_refused() {
        assert!(check_question("What is <this|thing>?").is_ok());
        assert!(check_question("a <| b").is_ok());
        assert!(check_question("is a <| b |> c or <||>?").is_ok());
        let err = check_question("What is <|vision_start|><|image_pad|>?").unwrap_err();
        assert!(err.contains("\"<|vision_start|>\""), "{err}");
    }

    #[test]
    fn images_the_processor_would_refuse_are_refused() {
        let png = |w, h| {
            let mut b = Vec::new();
            image::GrayImage::new(w, h)
                .write_to(&mut std::io::Cursor::new(&mut b), image::ImageFormat::Png)
                .unwrap();
            b
        };
        assert_eq!(check_image(&png(200, 1)), Ok((200, 1)));
        let err = check_image(&png(201, 1)).unwrap_err();
        assert!(err.contains("aspect ratio 201.0 is above 200"), "{err}");
        // A header that claims 100000x100000: 30 GB of RGB, never allocated.
        let mut huge = png(4, 4);
        huge[16..20].copy_from_slice(&100_000u32.to_be_bytes());
        huge[20..24].copy_from_slice(&100_000u32.to_be_bytes());
        let crc = crc32fast::hash(&huge[12..29]);
        huge[29..33].copy_from_slice(&crc.to_be_bytes());
        let err = check_image(&huge).unwrap_err();
        assert!(err.contains("above the decoder's 512 MiB limit"), "{err}");
    }

    #[test]
    fn candidates() {
        assert_eq!(
            parse_candidates(Some(r#"["a", "b", 3]"#)).unwrap(),
            vec!["a", "b", "3"]
        );
        assert_eq!(parse_candidates(None).unwrap(), Vec::<String>::new());
        assert_eq!(parse_candidates(Some("  ")).unwrap(), Vec::<String>::new());
        assert!(
            parse_candidates(Some("[1, "))
                .unwrap_err()
                .contains("not JSON")
        );
        assert!(
            parse_candidates(Some(r#"{"a":1}"#))
                .unwrap_err()
                .contains("not a list")
        );
        assert!(
            parse_candidates(Some(r#"[["x"]]"#))
                .unwrap_err()
                .contains("non-string")
        );
    }

    #[test]
    fn image_checks() {
        let mut png = Vec::new();
        image::RgbImage::new(3, 2)
            .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
            .unwrap();
        assert_eq!(check_image(&png), Ok((3, 2)));
        assert!(
            check_image(b"hello world")
                .unwrap_err()
                .contains("not an image")
        );
        assert!(
            check_image(&png[..20])
                .unwrap_err()
                .contains("truncated image")
        );
    }

    /// Files cut short (which `image` may decode without an error) are
    /// refused; whole files with bytes after the end are kept.
    #[test]
    fn truncated_images_are_refused() {
        let img = image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8, y as u8, 7]));
        for (format, name) in [
            (image::ImageFormat::Png, "PNG"),
            (image::ImageFormat::Jpeg, "JPEG"),
        ] {
            let mut bytes = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut bytes), format)
                .unwrap();
            assert_eq!(check_image(&bytes), Ok((64, 48)), "{name}");
            let cut = &bytes[..bytes.len() * 2 / 3];
            let err = check_image(cut).unwrap_err();
            assert!(
                err.contains(&format!("truncated image: a {name} without")),
                "{err}"
            );
            let mut trailing = bytes.clone();
            trailing.extend_from_slice(b"trailing bytes");
            assert_eq!(check_image(&trailing), Ok((64, 48)), "{name}");
        }
    }
}
