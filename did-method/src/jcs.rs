//! JSON Canonicalization Scheme (JCS). Spec: <https://www.rfc-editor.org/rfc/rfc8785>.
//!
//! The canonical form is what gets signed when an A2A agent card is given a detached JWS: object
//! members sorted by the UTF-16 code units of their names (§3.2.3), strings escaped the way
//! ECMAScript's `JSON.stringify` escapes them (§3.2.2.2), numbers written the way ECMAScript's
//! `Number.prototype.toString` writes an IEEE 754 double (§3.2.2.3), and no whitespace.
//!
//! Numbers are read through `as_f64`, never through `serde_json::Number`'s `Display` and never
//! in map iteration order, so the output is the same whether serde_json is built with
//! `arbitrary_precision` and `preserve_order` (the `ssi` and `josekit` crates turn both on in
//! the full workspace build) or without them. Without `arbitrary_precision` or `float_roundtrip`
//! serde_json's own text parser may round a long decimal to a neighbouring double; the
//! canonical form is that of the double the [`serde_json::Value`] holds.

use std::fmt::Write as _;

use serde_json::Value;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum JcsError {
    /// A number that is not a finite IEEE 754 double (`1e400`, say, which serde_json keeps as
    /// text under `arbitrary_precision`). RFC 8785 §3.2.2.3 requires I-JSON numbers (RFC 7493
    /// §2.2), and ECMAScript has no JSON text for NaN or the infinities.
    #[error("number {0} is not a finite IEEE 754 double")]
    NonFiniteNumber(String),
}

/// The RFC 8785 canonical form of `value`, as a string.
///
/// ```
/// let v = serde_json::json!({"b": [1.50, "\u{20ac}"], "a": -0.0});
/// assert_eq!(did_method::jcs::canonicalize(&v).unwrap(), "{\"a\":0,\"b\":[1.5,\"\u{20ac}\"]}");
/// ```
pub fn canonicalize(value: &Value) -> Result<String, JcsError> {
    let mut out = String::new();
    write_value(&mut out, value)?;
    Ok(out)
}

/// The RFC 8785 canonical form of `value` as UTF-8 bytes (§3.2.4), ready to hash or sign.
pub fn canonicalize_to_vec(value: &Value) -> Result<Vec<u8>, JcsError> {
    canonicalize(value).map(String::into_bytes)
}

fn write_value(out: &mut String, value: &Value) -> Result<(), JcsError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            // `as_f64` covers every representation: an i64/u64 is converted with IEEE
            // round-to-nearest-even (what ECMAScript does when it reads the same digits), and
            // under `arbitrary_precision` the kept text is parsed with a correctly rounded parser.
            let x = n
                .as_f64()
                .ok_or_else(|| JcsError::NonFiniteNumber(n.to_string()))?;
            write_number(out, x).map_err(|()| JcsError::NonFiniteNumber(n.to_string()))?;
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            // §3.2.3: sort by the names as arrays of UTF-16 code units, whatever order the map
            // iterates in (`preserve_order` keeps insertion order; the default map sorts by bytes).
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|(a, _), (b, _)| a.encode_utf16().cmp(b.encode_utf16()));
            out.push('{');
            for (i, (name, member)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, name);
                out.push(':');
                write_value(out, member)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

/// §3.2.2.2: ECMAScript `JSON.stringify` string escaping. Only `"`, `\` and the C0 controls are
/// escaped; everything else, U+2028/U+2029 and U+007F included, is written as UTF-8.
fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{08}' => out.push_str("\\b"),
            '\u{0C}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// §3.2.2.3: ECMAScript `Number::toString(x)` (ECMA-262 §6.1.6.1.20) for a finite double.
/// `Err(())` for NaN and the infinities.
fn write_number(out: &mut String, x: f64) -> Result<(), ()> {
    if !x.is_finite() {
        return Err(());
    }
    // Step 2: +0 and -0 are both "0".
    if x == 0.0 {
        out.push('0');
        return Ok(());
    }
    if x < 0.0 {
        out.push('-');
    }
    let (digits, exponent) = shortest_digits(x.abs())?;
    let k = i32::try_from(digits.len()).map_err(|_| ())?;
    // ECMA-262's n: the value is 0.d1d2...dk × 10^n.
    let n = exponent + 1;
    if k <= n && n <= 21 {
        // Step 6: an integer below 10^21, digits then n - k zeros.
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        // Step 7: the decimal point falls inside the digits.
        let (int, frac) = digits.split_at(n as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        // Step 8: 0.000ddd down to 1e-7 exclusive.
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        // Steps 9 and 10: exponent form, with an explicit sign on the exponent.
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let e = n - 1;
        out.push('e');
        out.push(if e >= 0 { '+' } else { '-' });
        let _ = write!(out, "{}", e.abs());
    }
    Ok(())
}

/// ECMA-262 step 5 for a finite positive double: the digits `s` (k of them, k as small as
/// possible) and the decimal exponent of the first digit.
///
/// Rust's `{:e}` without a precision prints a shortest digit string that reads back as the same
/// double. When two k-digit strings are equally short, ECMAScript wants the one closest to the
/// double, and the even one on an exact tie (Appendix B's "round to even" row); Rust's exact
/// formatting to k digits rounds the double's exact value half-to-even, so that string is taken
/// whenever it too reads back as the same double.
fn shortest_digits(x: f64) -> Result<(String, i32), ()> {
    let split = |sci: &str| -> Result<(String, i32), ()> {
        let (mantissa, exponent) = sci.split_once('e').ok_or(())?;
        let exponent: i32 = exponent.parse().map_err(|_| ())?;
        Ok((
            mantissa.chars().filter(char::is_ascii_digit).collect(),
            exponent,
        ))
    };
    let shortest = split(&format!("{x:e}"))?;
    let k = shortest.0.len();
    if k > 1 {
        let nearest = format!("{:.*e}", k - 1, x);
        if nearest.parse::<f64>() == Ok(x) {
            let nearest = split(&nearest)?;
            if nearest.0.len() == k {
                return Ok(nearest);
            }
        }
    }
    Ok(shortest)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    fn vectors() -> Value {
        serde_json::from_str(include_str!("../vectors/jcs-rfc8785.json")).unwrap()
    }

    fn number(x: f64) -> String {
        let mut out = String::new();
        write_number(&mut out, x).unwrap();
        out
    }

    // RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript text.
    #[test]
    fn appendix_b_number_table() {
        let v = vectors();
        let rows = v["appendix_b"]["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 26);
        for row in rows {
            let bits = u64::from_str_radix(row["ieee754"].as_str().unwrap(), 16).unwrap();
            let x = f64::from_bits(bits);
            match row["es"].as_str() {
                Some(want) => {
                    assert_eq!(number(x), want, "{}", row["ieee754"]);
                    // The same through a Value, as a caller would hand it in.
                    let value = Value::Number(serde_json::Number::from_f64(x).unwrap());
                    assert_eq!(canonicalize(&value).unwrap(), want);
                }
                None => {
                    assert!(!x.is_finite(), "{}", row["ieee754"]);
                    assert!(write_number(&mut String::new(), x).is_err());
                }
            }
        }
    }

    // RFC 8785 §3.2.2 (values) and §3.2.3 (sorting): JSON text in, canonical text out.
    #[test]
    fn rfc_examples() {
        let v = vectors();
        for case in v["examples"].as_array().unwrap() {
            let input: Value = serde_json::from_str(case["input"].as_str().unwrap()).unwrap();
            assert_eq!(
                canonicalize(&input).unwrap(),
                case["output"].as_str().unwrap(),
                "{}",
                case["from"]
            );
        }
    }

    // §3.2.3: the order of the sorting example differs between UTF-16 code units and both
    // UTF-8 bytes and code points (U+1F600 is D83D DE00 in UTF-16, below U+FB33).
    #[test]
    fn utf16_order_differs_from_byte_order() {
        let emoji = "\u{1F600}";
        let dalet = "\u{FB33}";
        assert!(emoji.as_bytes() > dalet.as_bytes());
        let v = json!({ emoji: 1, dalet: 2 });
        assert_eq!(
            canonicalize(&v).unwrap(),
            format!("{{\"{emoji}\":1,\"{dalet}\":2}}")
        );
    }

    #[test]
    fn strings_are_escaped_like_json_stringify() {
        let cases = [
            ("\"\\/", r#""\"\\/""#),
            ("\u{8}\u{c}\n\r\t", r#""\b\f\n\r\t""#),
            ("\u{0}\u{1}\u{1f}", r#""\u0000\u0001\u001f""#),
            (
                "\u{7f}\u{80}\u{2028}\u{2029}",
                "\"\u{7f}\u{80}\u{2028}\u{2029}\"",
            ),
            ("<\u{e9}\u{1F600}>", "\"<\u{e9}\u{1F600}>\""),
        ];
        for (input, want) in cases {
            assert_eq!(canonicalize(&json!(input)).unwrap(), want, "{input:?}");
        }
    }

    #[test]
    fn integers_and_their_limits() {
        let cases: [(Value, &str); 8] = [
            (json!(0), "0"),
            (json!(-1), "-1"),
            (json!(9007199254740991_i64), "9007199254740991"),
            (json!(-9007199254740992_i64), "-9007199254740992"),
            // Beyond 2^53, ECMAScript reads the digits into the nearest double.
            (json!(9007199254740993_u64), "9007199254740992"),
            (json!(i64::MIN), "-9223372036854776000"),
            (json!(u64::MAX), "18446744073709552000"),
            (json!(123456789012345678_i64), "123456789012345680"),
        ];
        for (value, want) in cases {
            assert_eq!(canonicalize(&value).unwrap(), want, "{value}");
        }
    }

    #[test]
    fn number_layout_thresholds() {
        let cases = [
            (1e21, "1e+21"),
            (1e20, "100000000000000000000"),
            (123e18, "123000000000000000000"),
            (1.5e21, "1.5e+21"),
            (1e-6, "0.000001"),
            (1.25e-6, "0.00000125"),
            (1e-7, "1e-7"),
            (-1.5e-7, "-1.5e-7"),
            (0.1, "0.1"),
            (-0.0, "0"),
            (4.5, "4.5"),
            (5e-324, "5e-324"),
        ];
        for (x, want) in cases {
            assert_eq!(number(x), want, "{x:e}");
        }
    }

    // Text parsing must not matter: the same double written four ways has one canonical form.
    #[test]
    fn spellings_of_one_double_agree() {
        for text in ["[1e2]", "[100]", "[100.0]", "[1.00E+2]", "[10000e-2]"] {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(canonicalize(&v).unwrap(), "[100]", "{text}");
        }
    }

    // Integer text beyond u64 and out-of-range exponents, which serde_json keeps as text under
    // `arbitrary_precision` and reads as f64 (or refuses) without it: the same answer either way.
    #[test]
    fn number_text_outside_machine_integers() {
        let cases = [
            (
                "[123456789012345678901234567890]",
                "[1.2345678901234568e+29]",
            ),
            ("[-18446744073709551616]", "[-18446744073709552000]"),
            ("[9007199254740993]", "[9007199254740992]"),
            ("[1E-400]", "[0]"),
            ("[-0]", "[0]"),
            ("[-0.0e5]", "[0]"),
        ];
        for (text, want) in cases {
            let v: Value = serde_json::from_str(text).unwrap();
            assert_eq!(canonicalize(&v).unwrap(), want, "{text}");
        }
        // Without arbitrary_precision serde_json refuses 1E400 itself; with it, we must.
        if let Ok(v) = serde_json::from_str::<Value>("[1E400]") {
            assert!(
                matches!(canonicalize(&v), Err(JcsError::NonFiniteNumber(_))),
                "{v}"
            );
        }
    }

    #[test]
    fn nested_structures_and_empties() {
        let v: Value = serde_json::from_str(
            r#"{ "b": [ {}, [], "", null, true, false ], "a": { "z": 1, "y": { } } }"#,
        )
        .unwrap();
        assert_eq!(
            canonicalize(&v).unwrap(),
            r#"{"a":{"y":{},"z":1},"b":[{},[],"",null,true,false]}"#
        );
        assert_eq!(
            canonicalize_to_vec(&v).unwrap(),
            canonicalize(&v).unwrap().into_bytes()
        );
    }

    fn arb_json() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter_map("finite", serde_json::Number::from_f64)
                .prop_map(Value::Number),
            any::<String>().prop_map(Value::String),
        ];
        leaf.prop_recursive(4, 48, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::vec((any::<String>(), inner), 0..6)
                    .prop_map(|members| Value::Object(members.into_iter().collect())),
            ]
        })
    }

    proptest! {
        // Canonical text is a fixed point: parse it and canonicalize again, same bytes.
        #[test]
        fn canonicalize_is_idempotent_through_parse(v in arb_json()) {
            let once = canonicalize(&v).unwrap();
            let reparsed: Value = serde_json::from_str(&once).unwrap();
            prop_assert_eq!(canonicalize(&reparsed).unwrap(), once);
        }

        // The order members arrive in never changes the output (matters under preserve_order).
        #[test]
        fn member_order_never_matters(
            members in proptest::collection::btree_map(any::<String>(), any::<i32>(), 0..12),
            seed in any::<u64>(),
        ) {
            let mut entries: Vec<(String, i32)> = members.into_iter().collect();
            let forward: serde_json::Map<String, Value> =
                entries.iter().map(|(k, v)| (k.clone(), Value::from(*v))).collect();
            // A deterministic shuffle from the seed.
            let mut state = seed | 1;
            for i in (1..entries.len()).rev() {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                entries.swap(i, (state % (i as u64 + 1)) as usize);
            }
            let shuffled: serde_json::Map<String, Value> =
                entries.iter().map(|(k, v)| (k.clone(), Value::from(*v))).collect();
            prop_assert_eq!(
                canonicalize(&Value::Object(forward)).unwrap(),
                canonicalize(&Value::Object(shuffled)).unwrap()
            );
        }

        // Numbers read back to the same double (the shortest-digits property, §3.2.2.3).
        #[test]
        fn numbers_round_trip(x in any::<f64>().prop_filter("finite", |x| x.is_finite())) {
            let text = number(x);
            let back: f64 = text.parse().unwrap();
            prop_assert!(back == x || (x == 0.0 && back == 0.0), "{} -> {}", x, text);
        }
    }
}
