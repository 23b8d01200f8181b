//! Token quantities: exact decimal amounts and their 18-decimal on-chain
//! share representation.
//!
//! A [`Quantity`] is parsed once at the boundary and never rounded. The
//! only deliberate loss of precision in the whole service is
//! [`split_for_alpaca`], which truncates to Alpaca's 9 decimals and returns
//! the remainder as explicit dust so it can be sent back on-chain.

use std::fmt;
use std::str::FromStr;

use alloy::primitives::U256;
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Decimals of the vault's ERC-20 shares (fixed by the vault, 1:1 ratio).
pub const SHARE_DECIMALS: u32 = 18;

/// Decimals Alpaca accepts on mint and redeem quantities.
pub const ALPACA_DECIMALS: u32 = 9;

/// 10^exp as U256; exp is at most 18 here so this cannot overflow.
fn pow10(exp: u32) -> U256 {
    U256::from(10u8).pow(U256::from(exp))
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuantityError {
    #[error("quantity is empty")]
    Empty,
    #[error("quantity {input:?} is not a plain decimal number")]
    Malformed { input: String },
    #[error("quantity must be positive")]
    NotPositive,
    #[error("quantity has {decimals} decimals, at most {max} allowed")]
    TooManyDecimals { decimals: u32, max: u32 },
    #[error("quantity is too large to represent exactly")]
    Overflow,
    #[error("{shares} shares cannot be represented as a quantity")]
    SharesUnrepresentable { shares: U256 },
}

/// A decimal exponent's digits as an `i64`, saturating: any exponent
/// beyond ±10^18 puts every digit string out of range anyway.
fn saturating_exponent(digits: &str) -> i64 {
    digits.bytes().fold(0i64, |acc, digit| {
        acc.saturating_mul(10)
            .saturating_add(i64::from(digit - b'0'))
    })
}

/// A text length as an `i64` (lengths are bounded by the body limit).
fn len_i64(text: &str) -> i64 {
    i64::try_from(text.len()).unwrap_or(i64::MAX)
}

/// A strictly positive amount with at most 18 fractional digits.
///
/// The share value (amount × 10^18) is computed with checked arithmetic at
/// construction, so [`Quantity::to_shares`] is infallible and exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Quantity {
    value: Decimal,
    shares: U256,
}

impl Quantity {
    /// Parses `^[0-9]+(\.[0-9]+)?$` exactly: no sign, no exponent, no
    /// rounding.
    pub fn parse(input: &str) -> Result<Self, QuantityError> {
        if input.is_empty() {
            return Err(QuantityError::Empty);
        }
        let malformed = || QuantityError::Malformed {
            input: input.chars().take(64).collect(),
        };
        let (int_part, frac_part) = match input.split_once('.') {
            Some((int_part, frac_part)) => (int_part, frac_part),
            None => (input, ""),
        };
        let well_formed = !int_part.is_empty()
            && int_part.bytes().all(|b| b.is_ascii_digit())
            && frac_part.bytes().all(|b| b.is_ascii_digit())
            && !(input.contains('.') && frac_part.is_empty());
        if !well_formed {
            return Err(malformed());
        }
        // Trailing zeros carry no value; strip them before counting
        // decimals so "1.50000000000000000000" is the same as "1.5".
        let frac_part = frac_part.trim_end_matches('0');
        let decimals =
            u32::try_from(frac_part.len()).map_err(|_| malformed())?;
        if decimals > SHARE_DECIMALS {
            return Err(QuantityError::TooManyDecimals {
                decimals,
                max: SHARE_DECIMALS,
            });
        }
        let mut mantissa: u128 = 0;
        for digit in int_part.bytes().chain(frac_part.bytes()) {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u128::from(digit - b'0')))
                .ok_or(QuantityError::Overflow)?;
        }
        Self::from_mantissa(mantissa, decimals)
    }

    /// Parses the literal text of a JSON number (RFC 8259 §6:
    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`) exactly: the
    /// exponent only moves the decimal point, so the value is the one the
    /// text denotes or an error, never a rounded neighbour
    /// (`1.00000000000000000000000000000001e0` has 32 decimals and is
    /// refused, not read as 1). Trailing zeros do not count as decimals
    /// (`1.50e1` is 15, `15e-1` is 1.5). A minus sign is `NotPositive`;
    /// anything outside the grammar is `Malformed`. Work is bounded by the
    /// text's length whatever the exponent (`1e999999999999` is `Overflow`,
    /// `1e-999999999999` `TooManyDecimals`).
    pub fn parse_json_number(input: &str) -> Result<Self, QuantityError> {
        if input.is_empty() {
            return Err(QuantityError::Empty);
        }
        let malformed = || QuantityError::Malformed {
            input: input.chars().take(64).collect(),
        };
        let (negative, unsigned) = match input.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, input),
        };
        let (mantissa_text, exponent_text) =
            match unsigned.split_once(['e', 'E']) {
                Some((mantissa, exponent)) => (mantissa, Some(exponent)),
                None => (unsigned, None),
            };
        let (int_part, frac_part) = match mantissa_text.split_once('.') {
            Some((int_part, frac_part)) => (int_part, Some(frac_part)),
            None => (mantissa_text, None),
        };
        let all_digits = |text: &str| {
            !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit())
        };
        let int_ok = all_digits(int_part)
            && (int_part == "0" || !int_part.starts_with('0'));
        let frac_ok = frac_part.is_none_or(all_digits);
        let exponent = match exponent_text {
            None => Some(0),
            Some(text) => {
                let (sign, digits) = if let Some(rest) = text.strip_prefix('-')
                {
                    (-1, rest)
                } else {
                    (1, text.strip_prefix('+').unwrap_or(text))
                };
                all_digits(digits).then(|| sign * saturating_exponent(digits))
            }
        };
        let (true, true, Some(exponent)) = (int_ok, frac_ok, exponent) else {
            return Err(malformed());
        };
        if negative {
            return Err(QuantityError::NotPositive);
        }
        // value = digits × 10^(exponent − fraction length); leading zeros
        // carry nothing, each trailing zero moves the point one place.
        let frac_part = frac_part.unwrap_or("");
        let digits = format!("{int_part}{frac_part}");
        let significant = digits.trim_start_matches('0');
        let trimmed = significant.trim_end_matches('0');
        if trimmed.is_empty() {
            return Err(QuantityError::NotPositive);
        }
        let power = exponent
            .saturating_sub(len_i64(frac_part))
            .saturating_add(len_i64(&significant[trimmed.len()..]));
        // Too precise is decided before too large, as in `parse`.
        if power < -i64::from(SHARE_DECIMALS) {
            return Err(QuantityError::TooManyDecimals {
                decimals: u32::try_from(power.unsigned_abs())
                    .unwrap_or(u32::MAX),
                max: SHARE_DECIMALS,
            });
        }
        let mut mantissa: u128 = 0;
        for digit in trimmed.bytes() {
            mantissa = mantissa
                .checked_mul(10)
                .and_then(|m| m.checked_add(u128::from(digit - b'0')))
                .ok_or(QuantityError::Overflow)?;
        }
        if power < 0 {
            // -18 ≤ power < 0 here.
            let decimals = u32::try_from(power.unsigned_abs())
                .map_err(|_| QuantityError::Overflow)?;
            return Self::from_mantissa(mantissa, decimals);
        }
        let scale = u32::try_from(power)
            .ok()
            .and_then(|power| 10u128.checked_pow(power))
            .ok_or(QuantityError::Overflow)?;
        let mantissa =
            mantissa.checked_mul(scale).ok_or(QuantityError::Overflow)?;
        Self::from_mantissa(mantissa, 0)
    }

    /// Builds from an integer mantissa and a scale (value = m / 10^scale).
    fn from_mantissa(
        mantissa: u128,
        scale: u32,
    ) -> Result<Self, QuantityError> {
        if mantissa == 0 {
            return Err(QuantityError::NotPositive);
        }
        if scale > SHARE_DECIMALS {
            return Err(QuantityError::TooManyDecimals {
                decimals: scale,
                max: SHARE_DECIMALS,
            });
        }
        let signed =
            i128::try_from(mantissa).map_err(|_| QuantityError::Overflow)?;
        let value = Decimal::try_from_i128_with_scale(signed, scale)
            .map_err(|_| QuantityError::Overflow)?
            .normalize();
        let shares = U256::from(mantissa)
            .checked_mul(pow10(SHARE_DECIMALS - scale))
            .ok_or(QuantityError::Overflow)?;
        Ok(Self { value, shares })
    }

    /// Builds from a decimal; rejects non-positive and over-precise values.
    pub fn from_decimal(value: Decimal) -> Result<Self, QuantityError> {
        if value.is_sign_negative() || value.is_zero() {
            return Err(QuantityError::NotPositive);
        }
        let value = value.normalize();
        let mantissa = u128::try_from(value.mantissa())
            .map_err(|_| QuantityError::NotPositive)?;
        Self::from_mantissa(mantissa, value.scale())
    }

    /// The exact inverse of [`Quantity::to_shares`]. Zero and values whose
    /// significant digits exceed rust_decimal's 96-bit mantissa are
    /// rejected, never rounded.
    pub fn from_shares(shares: U256) -> Result<Self, QuantityError> {
        let unrepresentable =
            || QuantityError::SharesUnrepresentable { shares };
        // Drop trailing zeros first: large whole amounts need fewer
        // mantissa digits than the raw 18-decimal share count.
        let ten = U256::from(10u8);
        let mut significant = shares;
        let mut scale = SHARE_DECIMALS;
        while scale > 0
            && !significant.is_zero()
            && (significant % ten).is_zero()
        {
            significant /= ten;
            scale -= 1;
        }
        let mantissa =
            u128::try_from(significant).map_err(|_| unrepresentable())?;
        Self::from_mantissa(mantissa, scale).map_err(|error| match error {
            QuantityError::NotPositive => QuantityError::NotPositive,
            _ => unrepresentable(),
        })
    }

    /// The amount in 18-decimal share units.
    pub fn to_shares(&self) -> U256 {
        self.shares
    }

    pub fn as_decimal(&self) -> Decimal {
        self.value
    }

    /// Number of significant fractional digits.
    pub fn decimals(&self) -> u32 {
        self.value.scale()
    }

    pub fn has_at_most_decimals(&self, max: u32) -> bool {
        self.decimals() <= max
    }
}

impl FromStr for Quantity {
    type Err = QuantityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `value` is normalized, so this prints no trailing zeros.
        fmt::Display::fmt(&self.value, f)
    }
}

impl Serialize for Quantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Quantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// A quantity Alpaca accepts: positive with at most 9 decimals.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, utoipa::ToSchema,
)]
#[schema(value_type = String, example = "10.5")]
pub struct AlpacaQuantity(Quantity);

impl AlpacaQuantity {
    pub fn new(quantity: Quantity) -> Result<Self, QuantityError> {
        if quantity.has_at_most_decimals(ALPACA_DECIMALS) {
            Ok(Self(quantity))
        } else {
            Err(QuantityError::TooManyDecimals {
                decimals: quantity.decimals(),
                max: ALPACA_DECIMALS,
            })
        }
    }

    pub fn parse(input: &str) -> Result<Self, QuantityError> {
        Self::new(Quantity::parse(input)?)
    }

    /// [`Quantity::parse_json_number`], then at most 9 decimals.
    pub fn parse_json_number(input: &str) -> Result<Self, QuantityError> {
        Self::new(Quantity::parse_json_number(input)?)
    }

    pub fn quantity(&self) -> Quantity {
        self.0
    }

    pub fn to_shares(&self) -> U256 {
        self.0.to_shares()
    }
}

impl FromStr for AlpacaQuantity {
    type Err = QuantityError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        Self::parse(input)
    }
}

impl fmt::Display for AlpacaQuantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl Serialize for AlpacaQuantity {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for AlpacaQuantity {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let quantity = Quantity::deserialize(d)?;
        Self::new(quantity).map_err(serde::de::Error::custom)
    }
}

/// The part of a share amount Alpaca can be told about, and the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AlpacaSplit {
    /// `None` when the amount is below 10^-9 (all dust).
    pub alpaca: Option<AlpacaQuantity>,
    /// The truncated remainder in 18-decimal share units (< 10^9).
    pub dust: U256,
}

/// Truncates `shares` toward zero to 9 decimals. `alpaca.to_shares() +
/// dust == shares` always holds; fails only if the truncated amount cannot
/// be represented as a [`Quantity`].
pub fn split_for_alpaca(shares: U256) -> Result<AlpacaSplit, QuantityError> {
    let unit = pow10(SHARE_DECIMALS - ALPACA_DECIMALS);
    let dust = shares % unit;
    let truncated = shares - dust;
    if truncated.is_zero() {
        return Ok(AlpacaSplit { alpaca: None, dust });
    }
    let alpaca = AlpacaQuantity::new(Quantity::from_shares(truncated)?)?;
    Ok(AlpacaSplit {
        alpaca: Some(alpaca),
        dust,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn shares(value: u128) -> U256 {
        U256::from(value)
    }

    #[test]
    fn parses_plain_decimals_exactly() {
        let q = Quantity::parse("1.5").unwrap();
        assert_eq!(q.to_shares(), shares(1_500_000_000_000_000_000));
        assert_eq!(q.to_string(), "1.5");
        assert_eq!(q.decimals(), 1);

        let smallest = Quantity::parse("0.000000000000000001").unwrap();
        assert_eq!(smallest.to_shares(), shares(1));

        let whole = Quantity::parse("100").unwrap();
        assert_eq!(whole.to_shares(), shares(100) * pow10(18));
        assert_eq!(whole.to_string(), "100");
    }

    #[test]
    fn trailing_zeros_do_not_count_as_decimals() {
        let q = Quantity::parse("2.500000000000000000000").unwrap();
        assert_eq!(q, Quantity::parse("2.5").unwrap());
        assert!(q.has_at_most_decimals(1));
        assert_eq!(q.to_string(), "2.5");
        assert_eq!(Quantity::parse("3.0").unwrap().to_string(), "3");
    }

    #[test]
    fn rejects_invalid_inputs() {
        let cases = [
            ("", QuantityError::Empty),
            ("-1", QuantityError::Malformed { input: "-1".into() }),
            ("+1", QuantityError::Malformed { input: "+1".into() }),
            (
                "1e5",
                QuantityError::Malformed {
                    input: "1e5".into(),
                },
            ),
            (
                "1E5",
                QuantityError::Malformed {
                    input: "1E5".into(),
                },
            ),
            (
                "NaN",
                QuantityError::Malformed {
                    input: "NaN".into(),
                },
            ),
            (".5", QuantityError::Malformed { input: ".5".into() }),
            ("5.", QuantityError::Malformed { input: "5.".into() }),
            (
                "1.2.3",
                QuantityError::Malformed {
                    input: "1.2.3".into(),
                },
            ),
            (" 1", QuantityError::Malformed { input: " 1".into() }),
            (
                "1_000",
                QuantityError::Malformed {
                    input: "1_000".into(),
                },
            ),
            ("0", QuantityError::NotPositive),
            ("0.000", QuantityError::NotPositive),
            (
                "0.0000000000000000001",
                QuantityError::TooManyDecimals {
                    decimals: 19,
                    max: 18,
                },
            ),
            ("79228162514264337593543950336", QuantityError::Overflow),
            (
                "999999999999999999999999999999999999999",
                QuantityError::Overflow,
            ),
            ("100000000000.000000000000000001", QuantityError::Overflow),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Quantity::parse(input),
                Err(expected),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn json_numbers_are_parsed_exactly() {
        let cases = [
            ("1", "1"),
            ("1.5", "1.5"),
            ("15e-1", "1.5"),
            ("1.50e1", "15"),
            ("0.000000001", "0.000000001"),
            ("1e-9", "0.000000001"),
            ("1E-9", "0.000000001"),
            ("1e+2", "100"),
            ("1e2", "100"),
            ("0.1e1", "1"),
            ("100e-2", "1"),
            ("1.000000000000000000000000000000000e0", "1"),
            ("123456789.123456789", "123456789.123456789"),
            ("0.000000000000000001", "0.000000000000000001"),
            ("1e-18", "0.000000000000000001"),
            ("1000000000000000000000e-21", "1"),
            ("79228162514264e0", "79228162514264"),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Quantity::parse_json_number(input),
                Quantity::parse(expected),
                "input {input:?}"
            );
        }
    }

    #[test]
    fn json_numbers_are_refused_never_rounded() {
        let malformed = |input: &str| QuantityError::Malformed {
            input: input.into(),
        };
        let cases = [
            // The campaign's case: 32 decimals, not "about 1".
            (
                "1.00000000000000000000000000000001e0",
                QuantityError::TooManyDecimals {
                    decimals: 32,
                    max: 18,
                },
            ),
            (
                "1.00000000000000000000000000000001",
                QuantityError::TooManyDecimals {
                    decimals: 32,
                    max: 18,
                },
            ),
            (
                "1e-19",
                QuantityError::TooManyDecimals {
                    decimals: 19,
                    max: 18,
                },
            ),
            (
                // The trailing zero does not count: 39 decimals.
                "12345678901234567890123456789012345678901234567890e-40",
                QuantityError::TooManyDecimals {
                    decimals: 39,
                    max: 18,
                },
            ),
            (
                "1e-999999999999",
                QuantityError::TooManyDecimals {
                    decimals: u32::MAX,
                    max: 18,
                },
            ),
            ("1e29", QuantityError::Overflow),
            ("1e39", QuantityError::Overflow),
            ("1e999999999999999999999999", QuantityError::Overflow),
            ("0", QuantityError::NotPositive),
            ("0.0e5", QuantityError::NotPositive),
            ("0e-999999999999", QuantityError::NotPositive),
            ("-1", QuantityError::NotPositive),
            ("-0", QuantityError::NotPositive),
            ("", QuantityError::Empty),
            ("01", malformed("01")),
            ("1.", malformed("1.")),
            (".5", malformed(".5")),
            ("1e", malformed("1e")),
            ("1e+", malformed("1e+")),
            ("1e5e3", malformed("1e5e3")),
            ("+1", malformed("+1")),
            ("--1", malformed("--1")),
            (" 1", malformed(" 1")),
            ("\"1\"", malformed("\"1\"")),
            ("null", malformed("null")),
            ("true", malformed("true")),
            ("NaN", malformed("NaN")),
            ("Infinity", malformed("Infinity")),
            ("1_000", malformed("1_000")),
            ("0x10", malformed("0x10")),
        ];
        for (input, expected) in cases {
            assert_eq!(
                Quantity::parse_json_number(input),
                Err(expected),
                "input {input:?}"
            );
        }
        assert_eq!(
            AlpacaQuantity::parse_json_number("1.0000000001"),
            Err(QuantityError::TooManyDecimals {
                decimals: 10,
                max: 9
            })
        );
        assert_eq!(
            AlpacaQuantity::parse_json_number("1234567891e-9")
                .unwrap()
                .to_string(),
            "1.234567891"
        );
    }

    #[test]
    fn from_decimal_rejects_negative_and_overprecise() {
        let neg = Decimal::from_str_exact("-1.5").unwrap();
        assert_eq!(
            Quantity::from_decimal(neg),
            Err(QuantityError::NotPositive)
        );
        assert_eq!(
            Quantity::from_decimal(Decimal::ZERO),
            Err(QuantityError::NotPositive)
        );
        let precise = Decimal::from_str_exact("0.1234567890123456789").unwrap();
        assert_eq!(
            Quantity::from_decimal(precise),
            Err(QuantityError::TooManyDecimals {
                decimals: 19,
                max: 18
            })
        );
        let ok = Decimal::from_str_exact("12.340").unwrap();
        assert_eq!(
            Quantity::from_decimal(ok).unwrap(),
            Quantity::parse("12.34").unwrap()
        );
    }

    #[test]
    fn from_shares_rejects_zero_and_unrepresentable() {
        assert_eq!(
            Quantity::from_shares(U256::ZERO),
            Err(QuantityError::NotPositive)
        );
        let huge = (U256::from(1u8) << 96) + U256::from(1u8);
        assert_eq!(
            Quantity::from_shares(huge),
            Err(QuantityError::SharesUnrepresentable { shares: huge })
        );
        assert_eq!(
            Quantity::from_shares(U256::MAX),
            Err(QuantityError::SharesUnrepresentable { shares: U256::MAX })
        );
        let q =
            Quantity::from_shares(shares(1_230_000_000_000_000_001)).unwrap();
        assert_eq!(q.to_string(), "1.230000000000000001");
        // Whole amounts beyond 2^96 atoms are fine when their digits fit.
        let big = Quantity::parse("79228162514264").unwrap();
        assert_eq!(Quantity::from_shares(big.to_shares()).unwrap(), big);
    }

    #[test]
    fn serde_uses_decimal_strings() {
        let q = Quantity::parse("42.125").unwrap();
        assert_eq!(serde_json::to_string(&q).unwrap(), "\"42.125\"");
        let back: Quantity = serde_json::from_str("\"42.125\"").unwrap();
        assert_eq!(back, q);
        assert!(serde_json::from_str::<Quantity>("42.125").is_err());
        assert!(serde_json::from_str::<Quantity>("\"-1\"").is_err());

        let a: AlpacaQuantity =
            serde_json::from_str("\"1.123456789\"").unwrap();
        assert_eq!(serde_json::to_string(&a).unwrap(), "\"1.123456789\"");
        assert!(
            serde_json::from_str::<AlpacaQuantity>("\"1.1234567891\"").is_err()
        );
    }

    #[test]
    fn alpaca_quantity_limits_decimals() {
        assert!(AlpacaQuantity::parse("0.000000001").is_ok());
        assert_eq!(
            AlpacaQuantity::parse("0.0000000001"),
            Err(QuantityError::TooManyDecimals {
                decimals: 10,
                max: 9
            })
        );
    }

    #[test]
    fn split_truncates_and_keeps_dust() {
        let split =
            split_for_alpaca(shares(1_234_567_891_234_567_891)).unwrap();
        assert_eq!(split.alpaca.unwrap().to_string(), "1.234567891");
        assert_eq!(split.dust, shares(234_567_891));

        let all_dust = split_for_alpaca(shares(999_999_999)).unwrap();
        assert_eq!(all_dust.alpaca, None);
        assert_eq!(all_dust.dust, shares(999_999_999));

        let exact = split_for_alpaca(shares(5_000_000_000)).unwrap();
        assert_eq!(exact.alpaca.unwrap().to_string(), "0.000000005");
        assert_eq!(exact.dust, U256::ZERO);

        assert_eq!(
            split_for_alpaca(U256::ZERO).unwrap(),
            AlpacaSplit {
                alpaca: None,
                dust: U256::ZERO
            }
        );
        assert!(split_for_alpaca(U256::MAX).is_err());
    }

    /// `int.frac × 10^exp` written without an exponent, by moving the
    /// decimal point in the text (the oracle of the exponent tests).
    fn shift_point(int: &str, frac: &str, exp: i64) -> String {
        let digits = format!("{int}{frac}");
        let point = i64::try_from(int.len()).unwrap() + exp;
        let len = i64::try_from(digits.len()).unwrap();
        if point <= 0 {
            let zeros = "0".repeat(usize::try_from(-point).unwrap());
            format!("0.{zeros}{digits}")
        } else if point >= len {
            let zeros = "0".repeat(usize::try_from(point - len).unwrap());
            format!("{digits}{zeros}")
        } else {
            let point = usize::try_from(point).unwrap();
            format!("{}.{}", &digits[..point], &digits[point..])
        }
    }

    /// Any representable share amount (below 2^96).
    fn share_amount() -> impl Strategy<Value = u128> {
        1..(1u128 << 96)
    }

    proptest! {
        #[test]
        fn shares_round_trip(raw in share_amount()) {
            let q = Quantity::from_shares(U256::from(raw)).unwrap();
            prop_assert_eq!(q.to_shares(), U256::from(raw));
            let reparsed = Quantity::parse(&q.to_string()).unwrap();
            prop_assert_eq!(reparsed, q);
            let json = serde_json::to_string(&q).unwrap();
            prop_assert_eq!(serde_json::from_str::<Quantity>(&json).unwrap(), q);
        }

        #[test]
        fn string_round_trip(int in 0u64..100_000_000_000, frac in 0u64..1_000_000_000_000_000_000, digits in 1usize..=18) {
            let frac = format!("{frac:018}");
            let frac = frac.get(..digits).unwrap();
            let input = format!("{int}.{frac}");
            // Oracle: the same digits with trailing zeros removed, which
            // rust_decimal parses exactly or not at all.
            let trimmed = input.trim_end_matches('0').trim_end_matches('.');
            let oracle = Decimal::from_str_exact(trimmed);
            match (Quantity::parse(&input), oracle) {
                (Ok(q), Ok(expected)) => {
                    // No silent rounding: the value equals the text exactly.
                    prop_assert_eq!(q.as_decimal(), expected);
                    prop_assert_eq!(Quantity::from_shares(q.to_shares()).unwrap(), q);
                }
                (Err(QuantityError::NotPositive), Ok(expected)) => {
                    prop_assert!(expected.is_zero());
                }
                (Err(QuantityError::Overflow), Err(_)) => {}
                (got, expected) => {
                    prop_assert!(false, "{input}: {got:?} vs {expected:?}");
                }
            }
        }

        #[test]
        fn split_is_lossless(raw in 0..(1u128 << 96)) {
            let total = U256::from(raw);
            let split = split_for_alpaca(total).unwrap();
            prop_assert!(split.dust < U256::from(1_000_000_000u64));
            let alpaca_shares = split.alpaca.map_or(U256::ZERO, |a| a.to_shares());
            prop_assert_eq!(alpaca_shares + split.dust, total);
            if let Some(a) = split.alpaca {
                prop_assert!(a.quantity().has_at_most_decimals(9));
            } else {
                prop_assert!(total < U256::from(1_000_000_000u64));
            }
        }

        /// Exponent form against an oracle that only moves the decimal
        /// point in the text: both must give the same result, value or
        /// error, so an exponent never rounds.
        #[test]
        fn json_exponent_only_moves_the_point(
            int in "0|[1-9][0-9]{0,20}",
            frac in proptest::option::of("[0-9]{1,40}"),
            exp in -60i64..60,
            marker in prop::sample::select(vec!["e", "E", "e+", "E+"]),
        ) {
            let frac_text = frac.as_deref().map_or(String::new(), |f| format!(".{f}"));
            let input = if exp < 0 {
                format!("{int}{frac_text}e{exp}")
            } else {
                format!("{int}{frac_text}{marker}{exp}")
            };
            let plain = shift_point(&int, frac.as_deref().unwrap_or(""), exp);
            prop_assert_eq!(
                Quantity::parse_json_number(&input),
                Quantity::parse(&plain),
                "{} vs {}", input, plain
            );
        }

        /// Plain JSON numbers (no exponent) mean what `parse` reads.
        #[test]
        fn plain_json_numbers_agree_with_parse(
            int in "0|[1-9][0-9]{0,30}",
            frac in proptest::option::of("[0-9]{1,30}"),
        ) {
            let input = match &frac {
                Some(frac) => format!("{int}.{frac}"),
                None => int.clone(),
            };
            prop_assert_eq!(Quantity::parse_json_number(&input), Quantity::parse(&input));
        }

        /// Every quantity's text and its scientific spellings read back
        /// as the same quantity.
        #[test]
        fn json_numbers_round_trip(raw in share_amount(), extra_zeros in 0usize..5) {
            let q = Quantity::from_shares(U256::from(raw)).unwrap();
            prop_assert_eq!(Quantity::parse_json_number(&q.to_string()).unwrap(), q);
            let decimal = q.as_decimal();
            let zeros = "0".repeat(extra_zeros);
            let scale = i64::from(decimal.scale()) + i64::try_from(extra_zeros).unwrap();
            let scientific = format!("{}{zeros}e-{scale}", decimal.mantissa());
            prop_assert_eq!(Quantity::parse_json_number(&scientific).unwrap(), q);
        }

        /// The grammar is JSON's: serde_json accepts the text as a number
        /// exactly when we do not call it malformed.
        #[test]
        fn json_grammar_matches_serde_json(input in "-?[0-9.]{0,4}([eE][-+]?[0-9]{0,3})?") {
            // RawValue, not Value: it keeps numbers beyond f64's range.
            // The input has only digits, signs, dots and e, so any JSON
            // value it parses as is a number.
            let serde_number =
                serde_json::from_str::<Box<serde_json::value::RawValue>>(&input).is_ok();
            let ours = Quantity::parse_json_number(&input);
            let malformed = matches!(ours, Err(QuantityError::Malformed { .. } | QuantityError::Empty));
            prop_assert_eq!(serde_number, !malformed, "{:?}: {:?}", input, ours);
        }

        /// Arbitrary text never panics and is never a quantity unless it
        /// is a JSON number.
        #[test]
        fn arbitrary_text_is_handled(input in "\\PC{0,40}") {
            if let Ok(q) = Quantity::parse_json_number(&input) {
                prop_assert!(serde_json::from_str::<Box<serde_json::value::RawValue>>(&input).is_ok());
                prop_assert!(q.to_shares() > U256::ZERO);
            }
        }

        #[test]
        fn over_precise_is_rejected_not_rounded(int in 0u64..1000, tail in 1u8..=9) {
            let input = format!("{int}.000000000000000000{tail}");
            prop_assert_eq!(
                Quantity::parse(&input),
                Err(QuantityError::TooManyDecimals { decimals: 19, max: 18 })
            );
        }
    }
}
