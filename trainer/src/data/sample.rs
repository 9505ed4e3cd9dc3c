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

/// A cheap check that bytes are an image the processor can open: the format
/// is recognised, the header gives non-zero dimensions, and the file is not
/// cut short.
pub fn check_image(bytes: &[u8]) -> Result<(u32, u32), String> {
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
    match reader.into_dimensions() {
        Ok((w, h)) if w > 0 && h > 0 => Ok((w, h)),
        Ok((w, h)) => Err(format!("image has empty size {w}x{h}")),
        Err(e) => Err(format!("corrupt image: {e}")),
    }
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
