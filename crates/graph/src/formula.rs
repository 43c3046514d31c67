//! Parameter formulas as small expression trees. A layer's parameter count is *computed by
//! evaluating* its formula, so the text shown to the user (`(3*3*32+1)*64`) and the integer in
//! the Param # column can never disagree. Evaluation uses checked `u64` arithmetic: a count that
//! does not fit is an error, not a wrap.

use std::fmt;

/// A product or sum of non-negative integers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expr {
    Num(u64),
    Mul(Vec<Expr>),
    Add(Vec<Expr>),
}

impl Expr {
    /// A number.
    pub fn n(v: usize) -> Self {
        Expr::Num(v as u64)
    }

    /// The product of `factors` (a single factor stands alone).
    pub fn product(factors: Vec<Expr>) -> Self {
        if factors.len() == 1 {
            factors.into_iter().next().unwrap_or(Expr::Num(1))
        } else {
            Expr::Mul(factors)
        }
    }

    /// The sum of `terms`.
    pub fn sum(terms: Vec<Expr>) -> Self {
        if terms.len() == 1 {
            terms.into_iter().next().unwrap_or(Expr::Num(0))
        } else {
            Expr::Add(terms)
        }
    }

    /// The value, or `None` on overflow.
    pub fn eval(&self) -> Option<u64> {
        match self {
            Expr::Num(v) => Some(*v),
            Expr::Mul(fs) => fs
                .iter()
                .try_fold(1u64, |acc, f| acc.checked_mul(f.eval()?)),
            Expr::Add(ts) => ts
                .iter()
                .try_fold(0u64, |acc, t| acc.checked_add(t.eval()?)),
        }
    }

    fn write(&self, f: &mut fmt::Formatter<'_>, nested: bool) -> fmt::Result {
        match self {
            Expr::Num(v) => write!(f, "{v}"),
            Expr::Mul(fs) => {
                for (i, x) in fs.iter().enumerate() {
                    if i > 0 {
                        write!(f, "*")?;
                    }
                    if matches!(x, Expr::Add(_)) {
                        write!(f, "(")?;
                        x.write(f, true)?;
                        write!(f, ")")?;
                    } else {
                        x.write(f, true)?;
                    }
                }
                Ok(())
            }
            Expr::Add(ts) => {
                let sep = if nested { "+" } else { " + " };
                for (i, x) in ts.iter().enumerate() {
                    if i > 0 {
                        write!(f, "{sep}")?;
                    }
                    x.write(f, nested)?;
                }
                Ok(())
            }
        }
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f, false)
    }
}

/// Evaluates formula text of the form the engine prints (integers, `*`, `+`, parentheses,
/// spaces). Used by tests and by anyone who wants to check a printed formula independently of
/// the tree that produced it.
pub fn evaluate_text(text: &str) -> Option<u64> {
    struct P<'a> {
        s: &'a [u8],
        i: usize,
    }
    impl P<'_> {
        fn skip(&mut self) {
            while self.i < self.s.len() && self.s[self.i] == b' ' {
                self.i += 1;
            }
        }
        fn sum(&mut self) -> Option<u64> {
            let mut v = self.product()?;
            loop {
                self.skip();
                if self.s.get(self.i) == Some(&b'+') {
                    self.i += 1;
                    v = v.checked_add(self.product()?)?;
                } else {
                    return Some(v);
                }
            }
        }
        fn product(&mut self) -> Option<u64> {
            let mut v = self.atom()?;
            loop {
                self.skip();
                if self.s.get(self.i) == Some(&b'*') {
                    self.i += 1;
                    v = v.checked_mul(self.atom()?)?;
                } else {
                    return Some(v);
                }
            }
        }
        fn atom(&mut self) -> Option<u64> {
            self.skip();
            if self.s.get(self.i) == Some(&b'(') {
                self.i += 1;
                let v = self.sum()?;
                self.skip();
                if self.s.get(self.i) != Some(&b')') {
                    return None;
                }
                self.i += 1;
                return Some(v);
            }
            let start = self.i;
            while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
                self.i += 1;
            }
            std::str::from_utf8(&self.s[start..self.i])
                .ok()?
                .parse()
                .ok()
        }
    }
    let mut p = P {
        s: text.as_bytes(),
        i: 0,
    };
    let v = p.sum()?;
    p.skip();
    (p.i == p.s.len()).then_some(v)
}

/// `604035` -> `"604,035"` (the grouping every report and message uses).
pub fn group_digits(n: u128) -> String {
    let s = n.to_string();
    let mut out = String::with_capacity(s.len() + s.len() / 3);
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conv_formula_renders_like_the_docs() {
        // 490 = 10*(4*4*3+1), seed 001.
        let e = Expr::product(vec![
            Expr::sum(vec![
                Expr::product(vec![Expr::n(4), Expr::n(4), Expr::n(3)]),
                Expr::n(1),
            ]),
            Expr::n(10),
        ]);
        assert_eq!(e.to_string(), "(4*4*3+1)*10");
        assert_eq!(e.eval(), Some(490));
        assert_eq!(evaluate_text(&e.to_string()), Some(490));
    }

    #[test]
    fn top_level_sum_is_spaced() {
        let e = Expr::sum(vec![
            Expr::product(vec![Expr::n(4), Expr::n(4), Expr::n(3)]),
            Expr::product(vec![Expr::n(3), Expr::n(10)]),
            Expr::n(10),
        ]);
        assert_eq!(e.to_string(), "4*4*3 + 3*10 + 10");
        assert_eq!(e.eval(), Some(88));
    }

    #[test]
    fn overflow_is_none() {
        let e = Expr::product(vec![Expr::Num(u64::MAX), Expr::n(2)]);
        assert_eq!(e.eval(), None);
        assert_eq!(evaluate_text("18446744073709551615*2"), None);
    }

    #[test]
    fn text_evaluator_rejects_garbage() {
        assert_eq!(evaluate_text("(1+2"), None);
        assert_eq!(evaluate_text("3x4"), None);
        assert_eq!(evaluate_text("1000000*1000000"), Some(1_000_000_000_000));
    }
}
