//! Resource quantities as quota usage adds them up: exact values (nano precision, as Go's
//! `resource.Quantity`), summed in the notation of the first term, printed canonically
//! ("128Mi", "1500m", "3").

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

const NANO: i128 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    BinarySi,
    DecimalSi,
}

/// A value in billionths of its unit, and the notation it prints in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Amount {
    nanos: i128,
    format: Format,
}

impl Amount {
    pub fn count(n: i64) -> Amount {
        Amount {
            nanos: i128::from(n) * NANO,
            format: Format::DecimalSi,
        }
    }

    pub fn zero() -> Amount {
        Amount::count(0)
    }

    pub fn parse(raw: &str) -> Option<Amount> {
        let raw = raw.trim();
        let (negative, rest) = match raw.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, raw.strip_prefix('+').unwrap_or(raw)),
        };
        let end = rest
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(rest.len());
        let (number, suffix) = rest.split_at(end);
        let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
        if whole.len() + fraction.len() == 0 || fraction.contains('.') {
            return None;
        }
        let mantissa: i128 = format!("{whole}{fraction}").parse().ok()?;
        let mut exponent = -i32::try_from(fraction.len()).ok()?;
        let (format, multiplier) = match suffix {
            "Ki" => (Format::BinarySi, 1i128 << 10),
            "Mi" => (Format::BinarySi, 1 << 20),
            "Gi" => (Format::BinarySi, 1 << 30),
            "Ti" => (Format::BinarySi, 1 << 40),
            "Pi" => (Format::BinarySi, 1 << 50),
            "Ei" => (Format::BinarySi, 1 << 60),
            _ => {
                exponent += match suffix {
                    "" => 0,
                    "n" => -9,
                    "u" => -6,
                    "m" => -3,
                    "k" => 3,
                    "M" => 6,
                    "G" => 9,
                    "T" => 12,
                    "P" => 15,
                    "E" => 18,
                    _ => suffix.strip_prefix(['e', 'E'])?.parse::<i32>().ok()?,
                };
                (Format::DecimalSi, 1)
            }
        };
        let value = mantissa.checked_mul(multiplier)?;
        // To nano units; anything finer rounds up, as Go does.
        let shift = exponent + 9;
        let nanos = if shift >= 0 {
            value.checked_mul(10i128.checked_pow(shift.unsigned_abs())?)?
        } else {
            let divisor = 10i128.checked_pow(shift.unsigned_abs())?;
            value / divisor + i128::from(value % divisor != 0)
        };
        Some(Amount {
            nanos: if negative { -nanos } else { nanos },
            format,
        })
    }

    pub fn of(quantity: &Quantity) -> Option<Amount> {
        Amount::parse(&quantity.0)
    }

    /// The sum, in this amount's notation (Go's `Quantity.Add`).
    pub fn plus(self, other: Amount) -> Amount {
        Amount {
            nanos: self.nanos.saturating_add(other.nanos),
            format: self.format,
        }
    }

    /// The difference, in this amount's notation (Go's `Quantity.Sub`).
    pub fn minus(self, other: Amount) -> Amount {
        Amount {
            nanos: self.nanos.saturating_sub(other.nanos),
            format: self.format,
        }
    }

    pub fn max(self, other: Amount) -> Amount {
        if other.nanos > self.nanos {
            Amount {
                nanos: other.nanos,
                format: self.format,
            }
        } else {
            self
        }
    }

    /// Compares values, whatever their notation.
    pub fn value_cmp(&self, other: &Amount) -> std::cmp::Ordering {
        self.nanos.cmp(&other.nanos)
    }

    pub fn is_zero(&self) -> bool {
        self.nanos == 0
    }

    pub fn is_negative(&self) -> bool {
        self.nanos < 0
    }

    /// Go's canonical spelling.
    pub fn canonical(&self) -> String {
        if self.nanos == 0 {
            return "0".into();
        }
        if self.format == Format::BinarySi
            && self.nanos % NANO == 0
            && (self.nanos / NANO).abs() >= 1024
        {
            let mut value = self.nanos / NANO;
            let mut power = 0;
            const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
            while value % 1024 == 0 && power < SUFFIXES.len() - 1 {
                value /= 1024;
                power += 1;
            }
            return format!("{value}{}", SUFFIXES[power]);
        }
        let (mut mantissa, mut exponent) = (self.nanos, -9i32);
        while mantissa % 10 == 0 {
            mantissa /= 10;
            exponent += 1;
        }
        // Suffixes step by powers of 1000.
        let shift = exponent.rem_euclid(3);
        mantissa *= 10i128.pow(shift.unsigned_abs());
        exponent -= shift;
        let suffix = match exponent {
            -9 => "n",
            -6 => "u",
            -3 => "m",
            0 => "",
            3 => "k",
            6 => "M",
            9 => "G",
            12 => "T",
            15 => "P",
            18 => "E",
            _ => return format!("{mantissa}e{exponent}"),
        };
        format!("{mantissa}{suffix}")
    }

    pub fn quantity(&self) -> Quantity {
        Quantity(self.canonical())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(terms: &[&str]) -> String {
        terms
            .iter()
            .map(|t| Amount::parse(t).unwrap())
            .reduce(Amount::plus)
            .unwrap()
            .canonical()
    }

    #[test]
    fn sums_print_canonically() {
        assert_eq!(sum(&["100m", "200m"]), "300m");
        assert_eq!(sum(&["1", "500m"]), "1500m");
        assert_eq!(sum(&["64Mi", "64Mi"]), "128Mi");
        assert_eq!(sum(&["1Gi", "512Mi"]), "1536Mi");
        assert_eq!(sum(&["1", "2"]), "3");
        assert_eq!(sum(&["1000M", "1G"]), "2G");
        assert_eq!(sum(&["0.5", "0.25"]), "750m");
        assert_eq!(sum(&["100", "0"]), "100");
        assert_eq!(sum(&["1e3"]), "1k");
        assert_eq!(sum(&["512"]), "512");
        assert_eq!(Amount::parse("x"), None);
    }
}
