//! The quorum canonicaliser on arbitrary upstream answers. Properties, beyond "never panics":
//!
//! - formatting never matters: the same value written otherwise (other whitespace, other key
//!   order, upper-case hex in values and keys, every number spelled another way: `0.5` as
//!   `50E-2`, `100` as `1.00e+2`) has the same canonical form;
//! - values matter: changing one leaf (a number by one more digit, a string, a boolean, a null)
//!   changes the canonical form, so two upstreams that disagree on a value never agree;
//! - the canonical form is valid JSON;
//! - `canonical_answer` and `quorum` decide consistently (agreeing upstreams reach `n`, every
//!   upstream is in exactly one of agreeing / minority).
//!
//! The answer is re-written here from its own text (serde_json's `RawValue` for each member),
//! never through serde_json's `Value`, whose numbers are floats: a re-written number keeps its
//! exact value.
//!
//! Input: byte 0 chooses the method (quantity method or not), byte 1 how to re-write (key
//! order, number spellings) and which leaf to change; the rest is the answer as JSON text.
#![no_main]

use std::fmt;

use keel_verify::{
    VerifyError, json,
    quorum::{Outcome, QUANTITY_METHODS, canonical_answer, canonical_for, quorum},
};
use libfuzzer_sys::fuzz_target;
use serde::de::{Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A JSON value as written: numbers keep their text, objects their order and duplicates.
#[derive(Clone, Debug)]
enum J {
    Null,
    Bool(bool),
    Num(String),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

/// An object's members in order, duplicates kept, values raw.
struct Members(Vec<(String, Box<RawValue>)>);

impl<'de> serde::Deserialize<'de> for Members {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members, A::Error> {
                let mut out = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    out.push((k, map.next_value::<Box<RawValue>>()?));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// Reads `text` (valid JSON, as keel accepted it) into a [`J`]; `None` past serde_json's
/// recursion limit.
fn read(text: &str) -> Option<J> {
    Some(match text.as_bytes().first()? {
        b'{' => {
            let Members(m) = serde_json::from_str(text).ok()?;
            let mut out = Vec::with_capacity(m.len());
            for (k, v) in m {
                out.push((k, read(v.get())?));
            }
            J::Obj(out)
        }
        b'[' => {
            let items: Vec<Box<RawValue>> = serde_json::from_str(text).ok()?;
            let mut out = Vec::with_capacity(items.len());
            for v in items {
                out.push(read(v.get())?);
            }
            J::Arr(out)
        }
        b'"' => J::Str(serde_json::from_str(text).ok()?),
        b't' => J::Bool(true),
        b'f' => J::Bool(false),
        b'n' => J::Null,
        _ => J::Num(text.to_owned()),
    })
}

/// How to re-write an answer.
#[derive(Clone, Copy)]
struct Style {
    pretty: bool,
    reverse_keys: bool,
    upper_hex: bool,
    /// Which spelling of numbers (see [`respell`]).
    numbers: u8,
}

fn upper(s: &str) -> String {
    match s.strip_prefix("0x") {
        Some(d) if d.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("0x{}", d.to_ascii_uppercase())
        }
        _ => s.to_owned(),
    }
}

/// A number (JSON grammar) split into sign, significant digits and exponent:
/// value = digits × 10^exp (digits without leading zeros, empty for zero).
fn split_number(text: &str) -> (bool, String, i64) {
    let (neg, t) = match text.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, text),
    };
    let (mant, exp) = match t.find(['e', 'E']) {
        Some(i) => (&t[..i], t[i + 1..].parse::<i64>().unwrap_or(0)),
        None => (t, 0),
    };
    let (int, frac) = mant.split_once('.').unwrap_or((mant, ""));
    let digits = format!("{int}{frac}");
    let digits = digits.trim_start_matches('0').to_owned();
    (neg, digits, exp - frac.len() as i64)
}

/// The same value spelled another way: trailing zeros added, the point moved, `E`, `+`.
fn respell(text: &str, how: u8) -> String {
    let (neg, digits, exp) = split_number(text);
    if exp.abs() > 100_000_000_000_000_000 {
        // Near the exponents keel refuses (beyond ±10^18): keep the text.
        return text.to_owned();
    }
    let sign = if neg { "-" } else { "" };
    if digits.is_empty() {
        // Zero, in one of its spellings (`-0` is zero).
        return ["0", "-0", "0.0", "0e7", "-0.00E-3"][usize::from(how) % 5].to_owned();
    }
    let zeros = usize::from(how >> 1 & 3);
    let d = format!("{digits}{}", "0".repeat(zeros));
    let point = usize::from(how >> 3 & 7).min(d.len());
    let e = exp - zeros as i64 + (d.len() - point) as i64;
    let (whole, frac) = d.split_at(point);
    let e_text = match how >> 6 {
        0 => format!("e{e}"),
        1 => format!("E{e}"),
        2 if e >= 0 => format!("e+{e}"),
        _ => format!("E{e}"),
    };
    format!(
        "{sign}{}{}{frac}{e_text}",
        if whole.is_empty() { "0" } else { whole },
        if frac.is_empty() { "" } else { "." },
    )
}

fn write(j: &J, style: Style, depth: usize, out: &mut String) {
    let (nl, ind) = if style.pretty {
        ("\n", "  ".repeat(depth + 1))
    } else {
        ("", String::new())
    };
    match j {
        J::Null => out.push_str("null"),
        J::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        J::Num(n) => out.push_str(&respell(n, style.numbers)),
        J::Str(s) => {
            let s = if style.upper_hex { upper(s) } else { s.clone() };
            out.push_str(&serde_json::to_string(&s).expect("a string serializes"));
        }
        J::Arr(items) => {
            out.push('[');
            for (i, x) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(nl);
                out.push_str(&ind);
                write(x, style, depth + 1, out);
            }
            out.push_str(nl);
            out.push(']');
        }
        J::Obj(members) => {
            // Upper-casing keys that differ only in hex case would make them duplicates (no
            // canonical form): keep such objects' keys as they are.
            let mut keys: Vec<String> = members
                .iter()
                .map(|(k, _)| if style.upper_hex { upper(k) } else { k.clone() })
                .collect();
            let mut sorted = keys.clone();
            sorted.sort();
            if sorted.windows(2).any(|w| w[0] == w[1]) {
                keys = members.iter().map(|(k, _)| k.clone()).collect();
            }
            let mut order: Vec<usize> = (0..members.len()).collect();
            if style.reverse_keys {
                order.reverse();
            }
            out.push('{');
            for (n, &i) in order.iter().enumerate() {
                if n > 0 {
                    out.push(',');
                }
                out.push_str(nl);
                out.push_str(&ind);
                out.push_str(&serde_json::to_string(&keys[i]).expect("a string serializes"));
                out.push_str(if style.pretty { ": " } else { ":" });
                write(&members[i].1, style, depth + 1, out);
            }
            out.push_str(nl);
            out.push('}');
        }
    }
}

fn text(j: &J, style: Style) -> Box<RawValue> {
    let mut out = String::new();
    write(j, style, 0, &mut out);
    RawValue::from_string(out).expect("the harness writes valid JSON")
}

/// Changes the `target`-th leaf (depth-first) so that its value differs; `None` when there is
/// no such leaf.
fn change_leaf(j: &mut J, target: &mut usize) -> Option<()> {
    match j {
        J::Arr(a) => a.iter_mut().find_map(|x| change_leaf(x, target)),
        J::Obj(m) => m.iter_mut().find_map(|(_, x)| change_leaf(x, target)),
        leaf => {
            if *target > 0 {
                *target -= 1;
                return None;
            }
            match leaf {
                J::Null => *leaf = J::Bool(false),
                J::Bool(b) => *b = !*b,
                J::Num(n) => {
                    // One more significant digit: another value (zero becomes one).
                    let (neg, digits, exp) = split_number(n);
                    *n = if digits.is_empty() {
                        "1".to_owned()
                    } else {
                        format!("{}{digits}1e{}", if neg { "-" } else { "" }, exp - 1)
                    };
                }
                // 'g' is no hex digit: the string is data now, and longer.
                J::Str(s) => s.push('g'),
                J::Arr(_) | J::Obj(_) => unreachable!("containers are handled above"),
            }
            Some(())
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let [sel, how, json @ ..] = data else {
        return;
    };
    let Ok(text_in) = std::str::from_utf8(json) else {
        return;
    };
    let Ok(answer) = RawValue::from_string(text_in.to_owned()) else {
        return;
    };
    let method = if sel & 1 == 1 {
        QUANTITY_METHODS[usize::from(sel >> 1) % QUANTITY_METHODS.len()]
    } else {
        "eth_call"
    };
    let canon = canonical_for(method, &answer);
    // A field of an object result, and an error answer: never panic.
    let _ = canonical_answer(method, Some("stateRoot"), Some(&answer), None);
    let _ = canonical_answer(method, None, None, Some(&answer));

    // An answer with no canonical form (a duplicate key, nesting deeper than 128, an exponent
    // beyond ±10^18) is compared by its raw bytes: nothing more to check.
    if json::parse(answer.get(), "result").is_err() {
        return;
    }
    serde_json::from_slice::<IgnoredAny>(&canon).unwrap_or_else(|e| {
        panic!(
            "the canonical form is not JSON ({e}): {}",
            String::from_utf8_lossy(&canon)
        )
    });
    let Some(tree) = read(answer.get()) else {
        return;
    };

    // Formatting never matters.
    let style = Style {
        pretty: how & 1 == 1,
        reverse_keys: how & 2 == 2,
        upper_hex: how & 4 == 4,
        numbers: how.rotate_right(3),
    };
    let other = text(&tree, style);
    assert_eq!(
        String::from_utf8_lossy(&canon),
        String::from_utf8_lossy(&canonical_for(method, &other)),
        "formatting changed the canonical form: {} vs {}",
        answer.get(),
        other.get()
    );

    // Values matter.
    let mut changed = tree.clone();
    let mut target = usize::from(sel >> 4);
    if change_leaf(&mut changed, &mut target).is_some() {
        let other = text(
            &changed,
            Style {
                numbers: 0,
                ..style
            },
        );
        assert_ne!(
            canon,
            canonical_for(method, &other),
            "two different values have one canonical form: {} vs {}",
            answer.get(),
            other.get()
        );
        // Three upstreams, two alike: 2 of 3 agree and the odd one is the minority.
        let a = canonical_answer(method, None, Some(&answer), None)
            .expect("a canonical form")
            .expect("a result");
        let b = match canonical_answer(method, None, Some(&other), None) {
            Ok(b) => b.expect("a result"),
            // One more digit can take an exponent of 18 digits to 19.
            Err(VerifyError::BadJson { reason, .. }) if reason.contains("exponent beyond") => {
                return;
            }
            Err(e) => panic!("keel refuses {}: {e}", other.get()),
        };
        let answers = [("u0", a.clone()), ("u1", b), ("u2", a)];
        match quorum(&answers, 2) {
            Outcome::Agreed {
                index,
                agreeing,
                minority,
            } => {
                assert_eq!(index, 0);
                assert_eq!(agreeing, ["u0", "u2"]);
                assert_eq!(minority, ["u1"]);
            }
            other => panic!("2 of 3 equal answers did not agree: {other:?}"),
        }
    }
});
