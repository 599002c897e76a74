//! The canonical spelling Go's `resource.Quantity.String()` prints, which is what upstream's
//! printers show for capacities ("1.5Gi" prints as "1536Mi", "1000M" as "1G").

#[derive(Clone, Copy, PartialEq)]
enum Format {
    BinarySi,
    DecimalSi,
    DecimalExponent,
}

/// An exact value `mantissa * 10^exponent`, with the notation it was written in.
struct Quantity {
    mantissa: i128,
    exponent: i32,
    format: Format,
}

/// Upstream's canonical form of `raw`, or `raw` itself when it is not a quantity.
pub(super) fn canonical(raw: &str) -> String {
    parse(raw)
        .and_then(|q| q.canonical())
        .unwrap_or_else(|| raw.to_string())
}

fn pow10(n: u32) -> Option<i128> {
    10i128.checked_pow(n)
}

fn parse(raw: &str) -> Option<Quantity> {
    let (negative, rest) = match raw.as_bytes().first() {
        Some(b'-') => (true, &raw[1..]),
        Some(b'+') => (false, &raw[1..]),
        _ => (false, raw),
    };
    let end = rest
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(end);
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    if whole.len() + fraction.len() == 0 || fraction.contains('.') {
        return None;
    }
    let mut mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
    let mut exponent = -i32::try_from(fraction.len()).ok()?;
    let (format, binary_shift, decimal_shift) = match suffix {
        "" => (Format::DecimalSi, 0, 0),
        "Ki" => (Format::BinarySi, 10, 0),
        "Mi" => (Format::BinarySi, 20, 0),
        "Gi" => (Format::BinarySi, 30, 0),
        "Ti" => (Format::BinarySi, 40, 0),
        "Pi" => (Format::BinarySi, 50, 0),
        "Ei" => (Format::BinarySi, 60, 0),
        "n" => (Format::DecimalSi, 0, -9),
        "u" => (Format::DecimalSi, 0, -6),
        "m" => (Format::DecimalSi, 0, -3),
        "k" => (Format::DecimalSi, 0, 3),
        "M" => (Format::DecimalSi, 0, 6),
        "G" => (Format::DecimalSi, 0, 9),
        "T" => (Format::DecimalSi, 0, 12),
        "P" => (Format::DecimalSi, 0, 15),
        "E" => (Format::DecimalSi, 0, 18),
        _ => {
            let digits = suffix.strip_prefix(['e', 'E'])?;
            (Format::DecimalExponent, 0, digits.parse::<i32>().ok()?)
        }
    };
    mantissa = mantissa.checked_mul(1i128.checked_shl(binary_shift)?)?;
    exponent = exponent.checked_add(decimal_shift)?;
    // Go keeps nano precision, rounding anything finer up (away from zero).
    if exponent < -9 {
        let divisor = pow10(u32::try_from(-9 - exponent).ok()?)?;
        let rounded_up = mantissa % divisor != 0;
        mantissa = mantissa / divisor + i128::from(rounded_up);
        exponent = -9;
    }
    Some(Quantity {
        mantissa: if negative { -mantissa } else { mantissa },
        exponent,
        format,
    })
}

impl Quantity {
    /// The value as an integer, when it is one.
    fn integer(&self) -> Option<i128> {
        if self.exponent >= 0 {
            return self
                .mantissa
                .checked_mul(pow10(u32::try_from(self.exponent).ok()?)?);
        }
        let divisor = pow10(u32::try_from(-self.exponent).ok()?)?;
        (self.mantissa % divisor == 0).then(|| self.mantissa / divisor)
    }

    fn canonical(&self) -> Option<String> {
        if self.mantissa == 0 {
            return Some("0".to_string());
        }
        let mut format = self.format;
        if format == Format::BinarySi {
            // Small or fractional binary values print in decimal rather than lose precision.
            match self.integer() {
                Some(value) if value.abs() >= 1024 => return Some(binary(value)),
                _ => format = Format::DecimalSi,
            }
        }
        let (mut mantissa, mut exponent) = (self.mantissa, self.exponent);
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        // Suffixes step by powers of 1000.
        let shift = exponent.rem_euclid(3);
        mantissa = mantissa.checked_mul(pow10(shift.unsigned_abs())?)?;
        exponent -= shift;
        let suffix = match (format, exponent) {
            (_, 0) => "",
            (Format::DecimalSi, -9) => "n",
            (Format::DecimalSi, -6) => "u",
            (Format::DecimalSi, -3) => "m",
            (Format::DecimalSi, 3) => "k",
            (Format::DecimalSi, 6) => "M",
            (Format::DecimalSi, 9) => "G",
            (Format::DecimalSi, 12) => "T",
            (Format::DecimalSi, 15) => "P",
            (Format::DecimalSi, 18) => "E",
            _ => return Some(format!("{mantissa}e{exponent}")),
        };
        Some(format!("{mantissa}{suffix}"))
    }
}

fn binary(mut value: i128) -> String {
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut power = 0;
    while value % 1024 == 0 && power < SUFFIXES.len() - 1 {
        value /= 1024;
        power += 1;
    }
    format!("{value}{}", SUFFIXES[power])
}

#[cfg(test)]
mod tests {
    use super::canonical;

    #[test]
    fn canonical_forms() {
        for (raw, want) in [
            ("5Gi", "5Gi"),
            ("1024Mi", "1Gi"),
            ("1.5Gi", "1536Mi"),
            ("1536Ki", "1536Ki"),
            ("512", "512"),
            ("0.1Ki", "102400m"),
            ("100Ki", "100Ki"),
            ("1000M", "1G"),
            ("1500M", "1500M"),
            ("1.5", "1500m"),
            ("100m", "100m"),
            ("0", "0"),
            ("0Gi", "0"),
            ("12e2", "1200"),
            ("1e3", "1e3"),
            ("2000", "2k"),
            ("0.5n", "1n"),
            ("junk", "junk"),
            ("", ""),
        ] {
            assert_eq!(canonical(raw), want, "{raw}");
        }
    }
}
