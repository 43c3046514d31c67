//! Pictures in: finds the image files among the command's arguments (a folder means every PNG
//! or JPEG in it), decodes them with the `image` crate (PNG and JPEG only, format detected from
//! the content), converts them to the model's channels (gray or RGB), resizes and centre-crops
//! them as the recipe says (`recipe`), and applies its pixel arithmetic (invert, scale, mean,
//! std) in the network's channel order and layout. It does not decide the recipe.
//!
//! Two resampling filters. *Area* (the model files' default): every output pixel is the mean of
//! the source area it covers, with fractional weights at the edges; for a downscale by an
//! integer factor (a 64x64 drawing of an 8x8 digit) that is the exact block mean, which is what
//! a network trained on small images expects. *Bilinear* (the ImageNet preset): the `image`
//! crate's triangle filter, widened by the scale factor on downscales (antialiased) and rounded
//! to 8 bits, as PIL's bilinear resize that torchvision's transforms use.

use crate::recipe::{ChannelOrder, Filter, Layout, Recipe, Target, MAX_SIDE};
use image::{imageops::FilterType, DynamicImage};
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

/// Decodes `path` into the network input `target` asks for (flat, in its layout), following
/// `recipe`: channels, resize, centre crop, channel order, pixel arithmetic.
pub fn load_picture(path: &Path, recipe: &Recipe, target: &Target) -> Result<Vec<f32>, String> {
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
    let (rw, rh) = recipe.resized_size(w, h, target);
    if rw > MAX_SIDE || rh > MAX_SIDE {
        return Err(format!(
            "{shown}: a {w}x{h} picture would be resized to {rw}x{rh}; sides are at most \
             {MAX_SIDE}"
        ));
    }
    let planes = match recipe.filter {
        Filter::Area => {
            let planes = to_planes(&picture, target.channels);
            if (rw, rh) == (w, h) {
                planes
            } else {
                planes
                    .iter()
                    .map(|p| area_resize(p, w, h, rw, rh))
                    .collect()
            }
        }
        Filter::Bilinear => {
            // Convert first, then resize (as `Image.open(p).convert("RGB")` before a transform).
            let converted = if target.channels == 1 {
                DynamicImage::ImageLuma8(picture.to_luma8())
            } else {
                DynamicImage::ImageRgb8(picture.to_rgb8())
            };
            let resized = if (rw, rh) == (w, h) {
                converted
            } else {
                converted.resize_exact(rw as u32, rh as u32, FilterType::Triangle)
            };
            to_planes(&resized, target.channels)
        }
    };
    let (ch, cw) = recipe.crop.unwrap_or((rh, rw));
    if ch > rh || cw > rw {
        return Err(format!(
            "{shown}: resized to {rw}x{rh}, smaller than the {cw}x{ch} crop"
        ));
    }
    // torchvision's centre: round((size - crop) / 2), halves to even (Python's round).
    let top = ((rh - ch) as f64 / 2.0).round_ties_even() as usize;
    let left = ((rw - cw) as f64 / 2.0).round_ties_even() as usize;
    if (ch, cw) != (target.height, target.width) {
        return Err(format!(
            "{shown}: the preprocessing gives {cw}x{ch} but the model takes {}x{}",
            target.width, target.height
        ));
    }
    let order: Vec<usize> = match (target.channels, recipe.channel_order) {
        (3, ChannelOrder::Bgr) => vec![2, 1, 0],
        (c, _) => (0..c).collect(),
    };
    let plane_len = ch * cw;
    let mut out = vec![0.0f32; target.channels * plane_len];
    for (c, &source) in order.iter().enumerate() {
        let plane = &planes[source];
        for y in 0..ch {
            let row = &plane[(top + y) * rw + left..][..cw];
            for (x, &p) in row.iter().enumerate() {
                let v = recipe.pixels.apply(p, c);
                let at = match target.layout {
                    Layout::Nchw => c * plane_len + y * cw + x,
                    Layout::Nhwc => (y * cw + x) * target.channels + c,
                };
                out[at] = v;
            }
        }
    }
    Ok(out)
}

/// The picture as `channels` planes of 8-bit values (as f32): gray, or red, green, blue.
fn to_planes(picture: &DynamicImage, channels: usize) -> Vec<Vec<f32>> {
    if channels == 1 {
        return vec![picture.to_luma8().pixels().map(|p| p.0[0] as f32).collect()];
    }
    let rgb = picture.to_rgb8();
    (0..3)
        .map(|c| rgb.pixels().map(|p| p.0[c] as f32).collect())
        .collect()
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
