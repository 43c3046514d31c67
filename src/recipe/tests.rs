use super::*;

fn flags() -> RecipeFlags {
    RecipeFlags::default()
}

#[test]
fn imagenet_preset_fits_a_224_nchw_input() {
    let mut r = Recipe::plain();
    let f = RecipeFlags {
        preset: Some("imagenet".into()),
        ..flags()
    };
    assert!(r.layer(&f, None).unwrap());
    let t = r.fit(&[Some(3), Some(224), Some(224)]).unwrap();
    assert_eq!(
        (t.channels, t.height, t.width, t.layout),
        (3, 224, 224, Layout::Nchw)
    );
    assert_eq!(r.labels.as_ref().map(Vec::len), Some(1000));
    // torchvision: Resize(256) on 500x375 gives 341x256 (the longer side rounded down).
    assert_eq!(r.resized_size(500, 375, &t), (341, 256));
    assert_eq!(r.resized_size(375, 500, &t), (256, 341));
}

#[test]
fn layout_comes_from_the_channel_axis() {
    let r = Recipe::plain();
    let t = r.fit(&[Some(224), Some(224), Some(3)]).unwrap();
    assert_eq!(t.layout, Layout::Nhwc);
    let e = r.fit(&[Some(5), Some(224), Some(7)]).unwrap_err();
    assert!(e.contains("cannot tell the channel axis"), "{e}");
}

#[test]
fn symbolic_sizes_need_a_crop() {
    let mut r = Recipe::plain();
    let e = r.fit(&[Some(3), None, None]).unwrap_err();
    assert!(e.contains("symbolic"), "{e}");
    r.crop = Some((100, 120));
    let t = r.fit(&[Some(3), None, None]).unwrap();
    assert_eq!((t.height, t.width), (100, 120));
}

#[test]
fn a_crop_that_disagrees_with_the_input_is_refused() {
    let mut r = Recipe::plain();
    r.crop = Some((200, 200));
    let e = r.fit(&[Some(3), Some(224), Some(224)]).unwrap_err();
    assert!(e.contains("200x200") && e.contains("224x224"), "{e}");
    r.crop = None;
    r.resize = Resize::ShorterSide(256);
    let e = r.fit(&[Some(3), Some(224), Some(224)]).unwrap_err();
    assert!(e.contains("needs a crop"), "{e}");
}

#[test]
fn mean_and_std_count_against_channels() {
    let mut r = Recipe::plain();
    r.pixels.mean = vec![0.1, 0.2];
    let e = r.fit(&[Some(3), Some(8), Some(8)]).unwrap_err();
    assert!(e.contains("mean has 2 values"), "{e}");
}

#[test]
fn flags_override_the_preset() {
    let mut r = Recipe::plain();
    let f = RecipeFlags {
        preset: Some("imagenet".into()),
        crop: Some("299".into()),
        resize: Some("342".into()),
        mean: Some("0.5".into()),
        channel_order: Some("BGR".into()),
        ..flags()
    };
    r.layer(&f, None).unwrap();
    assert_eq!(r.crop, Some((299, 299)));
    assert_eq!(r.resize, Resize::ShorterSide(342));
    assert_eq!(r.pixels.mean, vec![0.5]);
    assert_eq!(r.channel_order, ChannelOrder::Bgr);
    assert_eq!(r.sources, ["preset imagenet", "the command line"]);
}

#[test]
fn bad_flags_are_one_line_errors() {
    for (f, want) in [
        (
            RecipeFlags {
                preset: Some("coco".into()),
                ..flags()
            },
            "unknown preset 'coco'",
        ),
        (
            RecipeFlags {
                resize: Some("2x".into()),
                ..flags()
            },
            "--resize 2x",
        ),
        (
            RecipeFlags {
                crop: Some("0".into()),
                ..flags()
            },
            "sizes are 1 to",
        ),
        (
            RecipeFlags {
                std: Some("1,0,1".into()),
                ..flags()
            },
            "finite and positive",
        ),
        (
            RecipeFlags {
                filter: Some("cubic".into()),
                ..flags()
            },
            "use area or bilinear",
        ),
        (
            RecipeFlags {
                layout: Some("chw".into()),
                ..flags()
            },
            "use nchw or nhwc",
        ),
        (
            RecipeFlags {
                scale: Some(0.0),
                ..flags()
            },
            "non-zero",
        ),
        (
            RecipeFlags {
                scale: Some(1e300),
                ..flags()
            },
            "f32's range",
        ),
        (
            RecipeFlags {
                std: Some("1e-300".into()),
                ..flags()
            },
            "finite and positive",
        ),
        (
            RecipeFlags {
                mean: Some("1e300".into()),
                ..flags()
            },
            "finite within",
        ),
    ] {
        let e = Recipe::plain().layer(&f, None).unwrap_err();
        assert!(e.contains(want) && !e.contains('\n'), "{e}");
    }
}

#[test]
fn sidecar_keys_and_labels_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("names.txt"), "cat\ndog\n").unwrap();
    let side = dir.path().join("m.preprocess.toml");
    std::fs::write(
        &side,
        "preset = \"imagenet\"\ncrop = [32, 48]\nresize = [40, 50]\nlabels = \"names.txt\"\n\
         softmax = false\nlayout = \"nhwc\"\n",
    )
    .unwrap();
    let mut r = Recipe::plain();
    assert!(r.layer(&flags(), Some(&side)).unwrap());
    assert_eq!(r.labels, Some(vec!["cat".to_string(), "dog".to_string()]));
    assert_eq!((r.crop, r.resize), (Some((32, 48)), Resize::Exact(40, 50)));
    assert!(!r.softmax);
    assert_eq!(r.pixels.std, vec![0.229, 0.224, 0.225]);
    let t = r.fit(&[Some(32), Some(48), Some(3)]).unwrap();
    assert_eq!(t.layout, Layout::Nhwc);
    // A missing sidecar next to the model is no layer at all.
    assert!(!Recipe::plain()
        .layer(&flags(), Some(&dir.path().join("none.preprocess.toml")))
        .unwrap());
}

#[test]
fn sidecar_errors_name_the_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let side = dir.path().join("m.preprocess.toml");
    std::fs::write(&side, "crop = 224\nsclae = 2.0\n").unwrap();
    let e = Recipe::plain().layer(&flags(), Some(&side)).unwrap_err();
    assert!(
        e.contains("m.preprocess.toml: line 2") && e.contains("sclae"),
        "{e}"
    );
    assert!(!e.contains('\n'), "{e}");
    std::fs::write(&side, "labels = \"missing.txt\"\n").unwrap();
    let e = Recipe::plain().layer(&flags(), Some(&side)).unwrap_err();
    assert!(e.contains("missing.txt: no such file"), "{e}");
    std::fs::write(&side, "mean = []\n").unwrap();
    let e = Recipe::plain().layer(&flags(), Some(&side)).unwrap_err();
    assert!(e.contains("mean"), "{e}");
}

#[test]
fn sidecar_of_replaces_the_extension() {
    assert_eq!(
        sidecar_of(Path::new("a/resnet18.onnx")),
        Path::new("a/resnet18.preprocess.toml")
    );
}
