//! Pictures in: finds the image files among the command's arguments (a folder means every PNG
//! or JPEG in it), decodes them with the `image` crate (PNG and JPEG only, format detected from
//! the content), converts them to the model's channels (gray or RGB), resizes them to the
//! model's input and applies the model file's `[input]` preprocessing (invert, scale, mean, std).
//!
//! Resizing averages areas: every output pixel is the mean of the source area it covers, with
//! fractional weights at the edges. For a downscale by an integer factor (a 64x64 drawing of an
//! 8x8 digit) that is the exact block mean, which is what a network trained on small images
//! expects; the `image` crate's filters (triangle, Lanczos, …) blur across blocks instead.

use cnn_model::{InputSpec, Preprocess};
use std::path::{Path, PathBuf};

/// File extensions taken from a folder (case-insensitive).
const IMAGE_EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

/// True when `path` has a picture extension.
pub fn is_picture(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// Expands the arguments: files stay (they must exist), folders become their pictures (sorted).
pub fn expand_inputs(args: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    for arg in args {
        if arg.is_dir() {
            let mut found: Vec<PathBuf> = std::fs::read_dir(arg)
                .map_err(|e| format!("{}: cannot list the folder: {e}", arg.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.is_file() && is_picture(p))
                .collect();
            if found.is_empty() {
                return Err(format!(
                    "{}: the folder holds no PNG or JPEG pictures",
                    arg.display()
                ));
            }
            found.sort();
            out.extend(found);
        } else if arg.is_file() {
            out.push(arg.clone());
        } else {
            return Err(format!("{}: no such file or folder", arg.display()));
        }
    }
    Ok(out)
}

/// Mean of the source area covered by each output pixel, for one channel plane.
pub fn area_resize(src: &[f32], sw: usize, sh: usize, dw: usize, dh: usize) -> Vec<f32> {
    // Source extent of output index `i` along an axis: [i*s/d, (i+1)*s/d).
    let spans = |s: usize, d: usize| -> Vec<Vec<(usize, f64)>> {
        (0..d)
            .map(|i| {
                let lo = i as f64 * s as f64 / d as f64;
                let hi = (i + 1) as f64 * s as f64 / d as f64;
                let mut cells = Vec::new();
                let mut k = lo.floor() as usize;
                while (k as f64) < hi && k < s {
                    let w = (hi.min(k as f64 + 1.0) - lo.max(k as f64)).max(0.0);
                    if w > 0.0 {
                        cells.push((k, w));
                    }
                    k += 1;
                }
                cells
            })
            .collect()
    };
    let (xs, ys) = (spans(sw, dw), spans(sh, dh));
    let mut out = Vec::with_capacity(dw * dh);
    for yc in &ys {
        for xc in &xs {
            let mut sum = 0.0f64;
            let mut weight = 0.0f64;
            for &(y, wy) in yc {
                for &(x, wx) in xc {
                    sum += src[y * sw + x] as f64 * wy * wx;
                    weight += wy * wx;
                }
            }
            out.push(if weight > 0.0 {
                (sum / weight) as f32
            } else {
                0.0
            });
        }
    }
    out
}

/// Decodes `path` and returns the network input `[C, H, W]` for a model with `input` and
/// `pre` (flat, row-major).
pub fn load_picture(path: &Path, input: &InputSpec, pre: &Preprocess) -> Result<Vec<f32>, String> {
    let shown = path.display();
    let bytes = std::fs::read(path).map_err(|e| crate::file_error(path, "read", &e))?;
    // The content decides the format, whatever the file is called.
    let format = match image::guess_format(&bytes) {
        Ok(f @ (image::ImageFormat::Png | image::ImageFormat::Jpeg)) => f,
        Ok(other) => {
            return Err(format!(
                "{shown}: a {other:?} picture; only PNG and JPEG are supported"
            ))
        }
        Err(_) => return Err(format!("{shown}: not a PNG or JPEG picture")),
    };
    let picture = image::load_from_memory_with_format(&bytes, format)
        .map_err(|e| format!("{shown}: corrupt picture ({e})"))?;
    let (w, h) = (picture.width() as usize, picture.height() as usize);
    if w == 0 || h == 0 {
        return Err(format!("{shown}: the picture is empty"));
    }
    let planes: Vec<Vec<f32>> = match input.channels {
        1 => vec![picture.to_luma8().pixels().map(|p| p.0[0] as f32).collect()],
        3 => {
            let rgb = picture.to_rgb8();
            (0..3)
                .map(|c| rgb.pixels().map(|p| p.0[c] as f32).collect())
                .collect()
        }
        n => {
            return Err(format!(
                "{shown}: the model takes {n} channels, but pictures give 1 (gray) or 3 (RGB)"
            ))
        }
    };
    let mut out = Vec::with_capacity(input.channels * input.height * input.width);
    for (c, plane) in planes.iter().enumerate() {
        let resized = if (w, h) == (input.width, input.height) {
            plane.clone()
        } else {
            area_resize(plane, w, h, input.width, input.height)
        };
        out.extend(resized.into_iter().map(|p| pre.apply(p, c)));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_downscale_is_the_block_mean() {
        // 4x2 -> 2x1: blocks [1,2,5,6] and [3,4,7,8].
        let src = [1., 2., 3., 4., 5., 6., 7., 8.];
        assert_eq!(area_resize(&src, 4, 2, 2, 1), vec![3.5, 5.5]);
    }

    #[test]
    fn fractional_downscale_weights_partial_pixels() {
        // 3 -> 2: [0, 1.5) and [1.5, 3): (a + b/2) / 1.5 and (b/2 + c) / 1.5.
        let r = area_resize(&[3., 6., 9.], 3, 1, 2, 1);
        assert!(
            (r[0] - 4.0).abs() < 1e-6 && (r[1] - 8.0).abs() < 1e-6,
            "{r:?}"
        );
    }

    #[test]
    fn upscale_repeats_pixels() {
        assert_eq!(area_resize(&[1., 2.], 2, 1, 4, 1), vec![1., 1., 2., 2.]);
    }

    #[test]
    fn extensions() {
        assert!(is_picture(Path::new("a/B.PNG")));
        assert!(is_picture(Path::new("x.jpeg")));
        assert!(!is_picture(Path::new("x.npy")));
    }
}
