//! The model-file parser's tests: keys, defaults, names, inputs and every error's wording.

use super::*;
use crate::spec::{LayerKind, Source};
use cnn_conv::Padding;

const VGG_HEAD: &str = "name = \"t\"\n[input]\nchannels = 1\nheight = 28\nwidth = 28\n";

fn parse(body: &str) -> Result<ModelSpec, ModelError> {
    parse_model(&format!("{VGG_HEAD}{body}"), "t.toml")
}

#[test]
fn defaults_and_names() {
    let m = parse(
        "[[layers]]\ntype = \"conv2d\"\nfilters = 32\nkernel = 3\n\
         [[layers]]\ntype = \"conv2d\"\nfilters = 8\nkernel = [3, 5]\nstride = 2\npadding = \"same\"\n\
         [[layers]]\ntype = \"maxpool2d\"\npool = 2\n",
    )
    .unwrap();
    assert_eq!(m.layers[0].name, "conv2d_1");
    assert_eq!(m.layers[1].name, "conv2d_2");
    assert_eq!(m.layers[2].name, "maxpool2d_1");
    assert_eq!(m.layers[0].inputs, vec![Source::Input]);
    assert_eq!(m.layers[2].inputs, vec![Source::Layer(1)]);
    match &m.layers[1].kind {
        LayerKind::Conv2d {
            window,
            groups,
            use_bias,
            ..
        } => {
            assert_eq!(window.kernel, [3, 5]);
            assert_eq!(window.stride, [2, 2]);
            assert_eq!(window.padding, Padding::Same);
            assert_eq!((*groups, *use_bias), (1, true));
        }
        k => panic!("{k:?}"),
    }
    match &m.layers[2].kind {
        LayerKind::MaxPool2d { stride, .. } => assert_eq!(*stride, [2, 2]),
        k => panic!("{k:?}"),
    }
    assert_eq!(m.layers[0].line, 6);
}

#[test]
fn syntax_error_has_line_and_column() {
    let e = parse("[[layers]]\ntype = conv2d\n")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("t.toml:7:8: "), "{e}");
}

#[test]
fn unknown_key_names_key_layer_and_line() {
    let e = parse("[[layers]]\ntype = \"conv2d\"\nfilter = 32\nkernel = 3\n")
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("t.toml:8: layer `conv2d_1` (conv2d): unknown key `filter`"),
        "{e}"
    );
}

#[test]
fn unknown_type_is_named() {
    let e = parse("[[layers]]\ntype = \"conv3d\"\n")
        .unwrap_err()
        .to_string();
    assert!(e.contains("unknown layer type `conv3d`"), "{e}");
    assert!(e.contains("t.toml:7:"), "{e}");
}

#[test]
fn bad_values_are_named() {
    for (body, needle) in [
        (
            "type = \"conv2d\"\nfilters = 0\nkernel = 3\n",
            "`filters` must be at least 1",
        ),
        ("type = \"conv2d\"\nfilters = 4\n", "missing key `kernel`"),
        (
            "type = \"conv2d\"\nfilters = 4\nkernel = [1, 2, 3]\n",
            "found 3 values",
        ),
        (
            "type = \"conv2d\"\nfilters = 4\nkernel = 3\npadding = \"full\"\n",
            "\"full\"",
        ),
        (
            "type = \"dense\"\nunits = 4\nactivation = \"gelu\"\n",
            "unknown activation `gelu`",
        ),
        (
            "type = \"dense\"\nunits = 4\nuse_bias = 1\n",
            "must be true or false",
        ),
        ("type = \"dropout\"\nrate = 1.5\n", "must be in [0, 1)"),
        ("type = \"add\"\n", "needs at least two `inputs`"),
        (
            "type = \"flatten\"\ninputs = [\"nope\"]\n",
            "input `nope` is not the name",
        ),
    ] {
        let e = parse(&format!("[[layers]]\n{body}"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle), "{body}: {e}");
    }
}

#[test]
fn duplicate_names_are_rejected() {
    let e = parse(
        "[[layers]]\ntype = \"flatten\"\nname = \"a\"\n[[layers]]\ntype = \"flatten\"\nname = \"a\"\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("duplicate layer name `a`"), "{e}");
}

#[test]
fn default_names_skip_explicit_ones() {
    let m = parse(
        "[[layers]]\ntype = \"flatten\"\n[[layers]]\ntype = \"flatten\"\nname = \"flatten_2\"\n\
         [[layers]]\ntype = \"flatten\"\n",
    )
    .unwrap();
    let names: Vec<&str> = m.layers.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["flatten_1", "flatten_2", "flatten_3"]);
}

#[test]
fn preprocessing_keys() {
    let text =
        "name = \"p\"\nlabels = [\"a\", \"b\"]\n[input]\nchannels = 3\nheight = 2\nwidth = 2\n\
                invert = true\nscale = 0.5\nmean = [1.0, 2.0, 3.0]\nstd = [2.0]\n\
                [[layers]]\ntype = \"flatten\"\n";
    let m = parse_model(text, "p.toml").unwrap();
    assert!(m.preprocess.invert);
    assert_eq!(m.preprocess.std, vec![2.0]);
    // (255 - 55) * 0.5 = 100; (100 - 2) / 2 = 49.
    assert_eq!(m.preprocess.apply(55.0, 1), 49.0);
    assert_eq!(m.label(1), "b");
    let bad = text.replace("std = [2.0]", "std = [2.0, 0.0, 1.0]");
    let e = parse_model(&bad, "p.toml").unwrap_err().to_string();
    assert!(
        e.starts_with("p.toml:10:1: [input] std values must be finite and positive"),
        "{e}"
    );
    let bad = text.replace("mean = [1.0, 2.0, 3.0]", "mean = [1.0, 2.0]");
    let e = parse_model(&bad, "p.toml").unwrap_err().to_string();
    assert!(
        e.contains("mean has 2 values; give one per channel (3)"),
        "{e}"
    );
}

#[test]
fn unknown_top_level_key_has_position() {
    let e = parse_model("name = \"x\"\nnmae = 3\n", "m.toml")
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("m.toml:2:1: unknown field `nmae`"), "{e}");
}

#[test]
fn graph_inputs_resolve() {
    let m = parse(
        "[[layers]]\ntype = \"conv2d\"\nfilters = 4\nkernel = 3\npadding = \"same\"\nname = \"a\"\n\
         [[layers]]\ntype = \"conv2d\"\nfilters = 4\nkernel = 1\nname = \"b\"\ninputs = \"input\"\n\
         [[layers]]\ntype = \"add\"\ninputs = [\"a\", \"b\"]\n",
    )
    .unwrap();
    assert_eq!(m.layers[1].inputs, vec![Source::Input]);
    assert_eq!(m.layers[2].inputs, vec![Source::Layer(0), Source::Layer(1)]);
}

#[test]
fn a_batchnorm_epsilon_must_be_a_normal_f32() {
    let e = parse("[[layers]]\ntype = \"batchnorm\"\nepsilon = 1e-50\n")
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "t.toml:8: layer `batchnorm_1` (batchnorm): `epsilon` must be a normal f32 (from \
         1.1754944e-38 to 3.4028235e38; batchnorm computes in f32, as Keras does), found 1e-50"
    );
    assert!(parse("[[layers]]\ntype = \"batchnorm\"\nepsilon = 1e-30\n").is_ok());
}
