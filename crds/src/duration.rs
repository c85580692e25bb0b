//! Durations of flags and fields, in one syntax everywhere: kubectl's `--timeout` (Go's
//! `time.ParseDuration`), so `--lease-duration 1m30s` means the same to the operator, the
//! proxy and `kubectl lockstep wait`. The Gateway API duration fields (`timeouts`, `backoff`)
//! accept a subset of it, checked by their own pattern ([`crate::patterns::DURATION`])
//! and then read by this parser.

use std::time::Duration;

/// Parses a duration the way kubectl's `--timeout` does (Go's `time.ParseDuration`): one or
/// more decimal numbers, each with a unit (`ns`, `us`/`µs`, `ms`, `s`, `m`, `h`), as in `90s`,
/// `2m`, `1h30m`, `1.5h`, `500ms`. A bare number (`120`) is seconds, as earlier versions
/// of `--timeout` took. Negative durations are refused.
pub fn parse(text: &str) -> Result<Duration, String> {
    let invalid = |why: &str| {
        format!("invalid duration {text:?}: {why} (examples: 90s, 2m, 1h30m, 500ms, or 120 for seconds)")
    };
    let trimmed = text.trim();
    if trimmed.is_empty() {
        return Err(invalid("empty"));
    }
    if trimmed.starts_with('-') {
        return Err(invalid("negative"));
    }
    let body = trimmed.strip_prefix('+').unwrap_or(trimmed);
    // A bare number: seconds.
    if !body.is_empty() && body.chars().all(|c| c.is_ascii_digit() || c == '.') {
        let seconds: f64 = body.parse().map_err(|_| invalid("not a number"))?;
        return Duration::try_from_secs_f64(seconds).map_err(|_| invalid("out of range"));
    }
    let mut rest = body;
    let mut total = 0f64;
    while !rest.is_empty() {
        let number_len = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        if number_len == 0 {
            return Err(invalid("expected a number before each unit"));
        }
        let (number, after) = rest.split_at(number_len);
        let value: f64 = number
            .parse()
            .map_err(|_| invalid(&format!("{number:?} is not a number")))?;
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let seconds_per_unit = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            "" => return Err(invalid(&format!("missing unit after {number}"))),
            other => return Err(invalid(&format!("unknown unit {other:?} (ns, us, ms, s, m, h)"))),
        };
        total += value * seconds_per_unit;
        rest = after;
    }
    Duration::try_from_secs_f64(total).map_err(|_| invalid("out of range"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_take_kubectl_syntax_and_bare_seconds() {
        let ok = [
            ("90s", Duration::from_secs(90)),
            ("2m", Duration::from_secs(120)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h30m15s", Duration::from_secs(5415)),
            ("500ms", Duration::from_millis(500)),
            ("1.5h", Duration::from_secs(5400)),
            ("1m0.5s", Duration::from_millis(60_500)),
            ("250us", Duration::from_micros(250)),
            ("120", Duration::from_secs(120)),
            ("0", Duration::ZERO),
            ("2.5", Duration::from_millis(2500)),
            ("+3s", Duration::from_secs(3)),
        ];
        for (text, want) in ok {
            assert_eq!(parse(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn invalid_durations_are_refused_with_a_message_naming_the_problem() {
        for (text, why) in [
            ("", "empty"),
            ("-5s", "negative"),
            ("5x", "unknown unit \"x\""),
            ("1h30", "missing unit after 30"),
            ("m", "expected a number"),
            ("1..5s", "not a number"),
            ("five", "expected a number"),
            ("10 s", "unknown unit \" s\""),
        ] {
            let err = parse(text).expect_err(text);
            assert!(err.contains(why), "{text:?}: {err}");
            assert!(err.contains(&format!("{text:?}")), "{text:?}: {err}");
            assert!(err.contains("90s, 2m, 1h30m"), "{text:?}: {err}");
        }
    }
}
