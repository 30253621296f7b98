//! The quorum canonicaliser on arbitrary upstream answers. Properties, beyond "never panics":
//!
//! - formatting never matters: the same value re-serialized (other whitespace, other key order,
//!   upper-case hex) has the same canonical form;
//! - values matter: changing one leaf (an integer, a string, a boolean, a null) changes the
//!   canonical form, so two upstreams that disagree on a value never agree;
//! - `canonical_answer` and `quorum` decide consistently (agreeing upstreams reach `n`, every
//!   upstream is in exactly one of agreeing / minority).
//!
//! Input: byte 0 chooses the method (quantity method or not) and the leaf to change; the rest
//! is the answer as JSON text.
#![no_main]

use keel_verify::quorum::{Outcome, QUANTITY_METHODS, canonical_answer, canonical_for, quorum};
use libfuzzer_sys::fuzz_target;
use serde_json::{Value, value::RawValue};

fn raw(s: String) -> Box<RawValue> {
    RawValue::from_string(s).expect("serde_json writes valid JSON")
}

/// Upper-cases the hex digits of every `0x` string (values and keys): canonically equal.
fn upper_hex(v: &Value) -> Value {
    let up = |s: &str| match s.strip_prefix("0x") {
        Some(d) if d.bytes().all(|b| b.is_ascii_hexdigit()) => {
            format!("0x{}", d.to_ascii_uppercase())
        }
        _ => s.to_owned(),
    };
    match v {
        Value::String(s) => Value::String(up(s)),
        Value::Array(a) => Value::Array(a.iter().map(upper_hex).collect()),
        Value::Object(m) => {
            // Two keys that differ only in hex case would merge; keep such objects as they are.
            let mut out = serde_json::Map::new();
            for (k, x) in m {
                if out.insert(up(k), upper_hex(x)).is_some() {
                    return v.clone();
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

/// Changes the `target`-th leaf (depth-first) so that its value differs; `false` when there is
/// no such leaf or it cannot be changed without staying equal (floats, the largest integers).
fn change_leaf(v: &mut Value, target: &mut usize) -> Option<bool> {
    match v {
        Value::Array(a) => a.iter_mut().find_map(|x| change_leaf(x, target)),
        Value::Object(m) => m.values_mut().find_map(|x| change_leaf(x, target)),
        leaf => {
            if *target > 0 {
                *target -= 1;
                return None;
            }
            Some(match leaf {
                Value::Null => {
                    *leaf = Value::Bool(false);
                    true
                }
                Value::Bool(b) => {
                    *b = !*b;
                    true
                }
                Value::Number(n) => match (n.as_i64(), n.as_u64()) {
                    (Some(i), _) if i < i64::MAX => {
                        *leaf = Value::from(i + 1);
                        true
                    }
                    (_, Some(u)) if u < u64::MAX => {
                        *leaf = Value::from(u + 1);
                        true
                    }
                    _ => false,
                },
                Value::String(s) => {
                    // 'g' is no hex digit: the string is data now, and longer.
                    s.push('g');
                    true
                }
                _ => false,
            })
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&sel, json)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(json) else {
        return;
    };
    let Ok(answer) = RawValue::from_string(text.to_owned()) else {
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

    // Deeper than serde_json's recursion limit: compared as raw bytes, nothing more to check.
    let Ok(value) = serde_json::from_str::<Value>(answer.get()) else {
        return;
    };

    // Formatting never matters.
    let pretty = raw(serde_json::to_string_pretty(&value).expect("serializes"));
    assert_eq!(
        canon,
        canonical_for(method, &pretty),
        "whitespace or key order changed the canonical form"
    );
    let upper = raw(serde_json::to_string(&upper_hex(&value)).expect("serializes"));
    assert_eq!(
        canon,
        canonical_for(method, &upper),
        "hex case changed the canonical form"
    );

    // Values matter.
    let mut changed = value.clone();
    let mut target = usize::from(sel >> 4);
    if change_leaf(&mut changed, &mut target) == Some(true) {
        let other = raw(serde_json::to_string(&changed).expect("serializes"));
        assert_ne!(
            canon,
            canonical_for(method, &other),
            "two different values have one canonical form: {} vs {}",
            answer.get(),
            other.get()
        );
        // Three upstreams, two alike: 2 of 3 agree and the odd one is the minority.
        let a = canonical_answer(method, None, Some(&answer), None).expect("a result");
        let b = canonical_answer(method, None, Some(&other), None).expect("a result");
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
