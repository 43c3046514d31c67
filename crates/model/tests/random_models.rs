//! Random layer stacks — many of them impossible (windows larger than the input, groups that do
//! not divide, dense on a map) — must either plan or fail with an error; never panic. Whatever
//! plans must allocate, run forward on a batch, and produce exactly the planned output shape
//! with finite values. This is the contract between shape inference and the kernels.

use cnn_model::{parse_model, Model, DEFAULT_MAX_WEIGHT_BYTES};
use cnn_tensor::Tensor;
use proptest::prelude::*;

fn window_keys() -> impl Strategy<Value = String> {
    (
        1usize..5,
        1usize..5,
        1usize..4,
        prop_oneof![
            Just("\"valid\"".to_string()),
            Just("\"same\"".to_string()),
            (0usize..4).prop_map(|p| p.to_string()),
            (0usize..3, 0usize..3).prop_map(|(a, b)| format!("[{a}, {b}]")),
        ],
        1usize..3,
    )
        .prop_map(|(kh, kw, s, p, d)| {
            format!("kernel = [{kh}, {kw}]\nstride = {s}\npadding = {p}\ndilation = {d}\n")
        })
}

fn activation() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("relu"),
        Just("sigmoid"),
        Just("tanh"),
        Just("softmax"),
        Just("linear")
    ]
}

fn layer() -> impl Strategy<Value = String> {
    prop_oneof![
        (1usize..6, 1usize..3, window_keys(), activation(), any::<bool>()).prop_map(
            |(f, g, w, a, b)| format!(
                "type = \"conv2d\"\nfilters = {f}\ngroups = {g}\n{w}activation = \"{a}\"\nuse_bias = {b}\n"
            )
        ),
        (1usize..3, window_keys(), activation()).prop_map(|(m, w, a)| format!(
            "type = \"depthwise_conv2d\"\ndepth_multiplier = {m}\n{w}activation = \"{a}\"\n"
        )),
        (1usize..5, 1usize..3, window_keys()).prop_map(|(f, m, w)| format!(
            "type = \"separable_conv2d\"\nfilters = {f}\ndepth_multiplier = {m}\n{w}"
        )),
        (1usize..4, 1usize..4, 1usize..3, any::<bool>()).prop_map(|(f, k, s, b)| format!(
            "type = \"locally_connected2d\"\nfilters = {f}\nkernel = {k}\nstride = {s}\nuse_bias = {b}\n"
        )),
        (1usize..8, activation()).prop_map(|(u, a)| format!(
            "type = \"dense\"\nunits = {u}\nactivation = \"{a}\"\n"
        )),
        (
            prop_oneof![Just("maxpool2d"), Just("avgpool2d")],
            1usize..4,
            1usize..4,
            prop_oneof![Just("\"valid\""), Just("\"same\""), Just("1")]
        )
            .prop_map(|(t, p, s, pad)| format!(
                "type = \"{t}\"\npool = {p}\nstride = {s}\npadding = {pad}\n"
            )),
        Just("type = \"flatten\"\n".to_string()),
        Just("type = \"global_avgpool2d\"\n".to_string()),
        Just("type = \"global_maxpool2d\"\n".to_string()),
        Just("type = \"channel_sum\"\n".to_string()),
        Just("type = \"batchnorm\"\n".to_string()),
        Just("type = \"dropout\"\nrate = 0.3\n".to_string()),
        activation().prop_map(|a| format!("type = \"activation\"\nactivation = \"{a}\"\n")),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, .. ProptestConfig::default() })]

    #[test]
    fn plan_never_panics_and_planned_models_run(
        c in 1usize..4,
        h in 1usize..10,
        w in 1usize..10,
        layers in prop::collection::vec(layer(), 1..5),
        batch in 1usize..3,
    ) {
        let mut text = format!("name = \"r\"\n[input]\nchannels = {c}\nheight = {h}\nwidth = {w}\n");
        for l in &layers {
            text.push_str("[[layers]]\n");
            text.push_str(l);
        }
        let spec = parse_model(&text, "r.toml").expect("generated text is valid model syntax");
        let Ok(mut m) = Model::plan_spec(&spec) else { return Ok(()) };
        m.allocate(3, DEFAULT_MAX_WEIGHT_BYTES).expect("small models allocate");
        let mut shape = vec![batch, c, h, w];
        let n: usize = shape.iter().product();
        let x = Tensor::from_vec(&shape, (0..n).map(|i| ((i * 7919) % 13) as f32 / 13.0 - 0.5).collect()).unwrap();
        let y = m.forward(&x).map_err(|e| TestCaseError::fail(format!("{e}\n{text}")))?;
        shape.truncate(1);
        shape.extend_from_slice(m.plan.output_shape());
        prop_assert_eq!(y.shape(), shape.as_slice(), "{}", text);
        prop_assert!(y.as_slice().iter().all(|v| v.is_finite()), "{}", text);
    }
}
