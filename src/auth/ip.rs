//! Client addresses: CIDR allow-lists per audience and the rule for where
//! the client IP comes from (TCP peer, or a trusted proxy's header).

use std::fmt;
use std::net::{IpAddr, SocketAddr};

use ipnetwork::IpNetwork;
use rocket::Request;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowListError {
    #[error("`{entry}` is not a CIDR range or IP address")]
    InvalidCidr { entry: String },
}

/// The networks an audience may call from. Empty means any address.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct AllowList {
    networks: Vec<IpNetwork>,
}

impl AllowList {
    /// An allow-list admitting every address.
    pub fn any() -> Self {
        Self::default()
    }

    pub fn parse<I, S>(entries: I) -> Result<Self, AllowListError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let networks = entries
            .into_iter()
            .map(|entry| {
                let entry = entry.as_ref().trim();
                entry.parse::<IpNetwork>().map_err(|_| {
                    AllowListError::InvalidCidr {
                        entry: entry.to_owned(),
                    }
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { networks })
    }

    pub fn admits_any(&self) -> bool {
        self.networks.is_empty()
    }

    /// Whether a range spans a whole address family (`/0`).
    pub fn has_catch_all_range(&self) -> bool {
        self.networks.iter().any(|network| network.prefix() == 0)
    }

    pub fn networks(&self) -> &[IpNetwork] {
        &self.networks
    }

    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.admits_any()
            || self.networks.iter().any(|network| network.contains(ip))
    }
}

impl TryFrom<Vec<String>> for AllowList {
    type Error = AllowListError;

    fn try_from(entries: Vec<String>) -> Result<Self, Self::Error> {
        Self::parse(entries)
    }
}

impl<'de> serde::Deserialize<'de> for AllowList {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        let entries = Vec::<String>::deserialize(deserializer)?;
        Self::parse(entries).map_err(serde::de::Error::custom)
    }
}

impl fmt::Debug for AllowList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.admits_any() {
            return f.write_str("AllowList(any)");
        }
        f.debug_list()
            .entries(self.networks.iter().map(ToString::to_string))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{name}` is not a valid HTTP header name")]
pub struct InvalidHeaderName {
    pub name: String,
}

/// The header a trusted reverse proxy sets to the client's address, such
/// as `X-Forwarded-For` or `X-Real-IP`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientIpHeader(String);

impl ClientIpHeader {
    pub fn new(name: &str) -> Result<Self, InvalidHeaderName> {
        // RFC 9110 token characters.
        let valid = !name.is_empty()
            && name.bytes().all(|byte| {
                byte.is_ascii_alphanumeric()
                    || b"!#$%&'*+-.^_`|~".contains(&byte)
            });
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(InvalidHeaderName {
                name: name.to_owned(),
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for ClientIpHeader {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        Self::new(&name).map_err(serde::de::Error::custom)
    }
}

/// Where the client address of a request is read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientIpSource {
    /// The TCP peer: no proxy is trusted.
    Peer,
    /// The named header, set by a trusted proxy. A request without a
    /// parsable value has no known address (fail closed: never fall back
    /// to the peer, which would be the proxy itself).
    Header(ClientIpHeader),
}

impl ClientIpSource {
    pub fn from_config(header: Option<&ClientIpHeader>) -> Self {
        header.map_or(Self::Peer, |header| Self::Header(header.clone()))
    }

    pub fn resolve(&self, request: &Request<'_>) -> Option<IpAddr> {
        match self {
            // Through the front door the TCP peer is the door itself; it
            // vouches for the real one.
            Self::Peer => crate::http::front::peer_ip(request).or_else(|| {
                request.remote().map(|peer| peer.ip().to_canonical())
            }),
            Self::Header(header) => request
                .headers()
                .get(header.as_str())
                .last()
                .and_then(parse_forwarded),
        }
    }
}

/// Takes the right-most entry of a (possibly comma-separated) forwarding
/// header: the address the trusted proxy itself saw. Entries to its left
/// were supplied by the client and cannot be trusted.
fn parse_forwarded(value: &str) -> Option<IpAddr> {
    let entry = value.rsplit(',').next()?.trim();
    entry
        .parse::<IpAddr>()
        .ok()
        .or_else(|| entry.parse::<SocketAddr>().ok().map(|addr| addr.ip()))
        .map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_list_admits_any_address() {
        let list = AllowList::any();
        assert!(list.admits_any());
        assert!(list.allows("203.0.113.7".parse().unwrap()));
    }

    #[test]
    fn list_admits_only_its_ranges() {
        let list = AllowList::parse(["10.0.0.0/8", "::1/128"]).unwrap();
        assert!(list.allows("10.1.2.3".parse().unwrap()));
        assert!(list.allows("::1".parse().unwrap()));
        assert!(!list.allows("11.0.0.1".parse().unwrap()));
        assert!(!list.allows("::2".parse().unwrap()));
    }

    #[test]
    fn ipv4_mapped_ipv6_addresses_match_ipv4_ranges() {
        let list = AllowList::parse(["127.0.0.0/8"]).unwrap();
        assert!(list.allows("::ffff:127.0.0.1".parse().unwrap()));
    }

    #[test]
    fn rejects_garbage_and_detects_catch_all() {
        assert_eq!(
            AllowList::parse(["10.0.0.0/33"]).unwrap_err(),
            AllowListError::InvalidCidr {
                entry: "10.0.0.0/33".to_owned()
            }
        );
        assert!(
            AllowList::parse(["0.0.0.0/0"])
                .unwrap()
                .has_catch_all_range()
        );
        assert!(
            !AllowList::parse(["10.0.0.0/8"])
                .unwrap()
                .has_catch_all_range()
        );
    }

    #[test]
    fn forwarded_header_uses_right_most_entry() {
        assert_eq!(
            parse_forwarded("198.51.100.1, 203.0.113.9"),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            parse_forwarded("203.0.113.9:4711"),
            Some("203.0.113.9".parse().unwrap())
        );
        assert_eq!(
            parse_forwarded("[2001:db8::1]:443"),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(parse_forwarded("unknown"), None);
    }

    #[test]
    fn header_names_are_validated() {
        assert!(ClientIpHeader::new("X-Forwarded-For").is_ok());
        assert!(ClientIpHeader::new("").is_err());
        assert!(ClientIpHeader::new("X Real IP").is_err());
    }
}
