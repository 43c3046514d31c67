//! Renders what the model crate computed — plans, explanations, comparisons, forward-pass
//! results — as terminal tables, Markdown or JSON. Nothing here computes a count; it only
//! formats numbers the engine derived.

pub mod compare;
pub mod explain;
pub mod kernel;
pub mod run;
pub mod summary;
pub mod table;

/// `[32, 26, 26]` -> `(32, 26, 26)`, Keras' way of printing shapes (without the batch).
pub fn paren_shape(shape: &[usize]) -> String {
    let inner: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    if inner.len() == 1 {
        format!("({},)", inner[0])
    } else {
        format!("({})", inner.join(", "))
    }
}
