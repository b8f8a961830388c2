//! RFC 6120 error conditions: stream errors (§4.9.3) and stanza errors (§8.3.3).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Generates a condition enum whose variants map one-to-one onto RFC element names.
macro_rules! conditions {
    ($(#[$meta:meta])* $name:ident, $what:literal { $($variant:ident => $text:literal,)+ }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name {
            $(
                #[doc = concat!("`<", $text, "/>`")]
                #[serde(rename = $text)]
                $variant,
            )+
        }

        impl $name {
            /// Every condition, in RFC order.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The defined-condition element name, e.g. `not-well-formed`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = UnknownCondition;

            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s {
                    $($text => Ok($name::$variant),)+
                    _ => Err(UnknownCondition { kind: $what, name: s.to_owned() }),
                }
            }
        }
    };
}

conditions! {
    /// Stream error conditions, RFC 6120 §4.9.3. Serializes as the element name.
    StreamErrorCondition, "stream" {
        BadFormat => "bad-format",
        BadNamespacePrefix => "bad-namespace-prefix",
        Conflict => "conflict",
        ConnectionTimeout => "connection-timeout",
        HostGone => "host-gone",
        HostUnknown => "host-unknown",
        ImproperAddressing => "improper-addressing",
        InternalServerError => "internal-server-error",
        InvalidFrom => "invalid-from",
        InvalidNamespace => "invalid-namespace",
        InvalidXml => "invalid-xml",
        NotAuthorized => "not-authorized",
        NotWellFormed => "not-well-formed",
        PolicyViolation => "policy-violation",
        RemoteConnectionFailed => "remote-connection-failed",
        Reset => "reset",
        ResourceConstraint => "resource-constraint",
        RestrictedXml => "restricted-xml",
        SeeOtherHost => "see-other-host",
        SystemShutdown => "system-shutdown",
        UndefinedCondition => "undefined-condition",
        UnsupportedEncoding => "unsupported-encoding",
        UnsupportedFeature => "unsupported-feature",
        UnsupportedStanzaType => "unsupported-stanza-type",
        UnsupportedVersion => "unsupported-version",
    }
}

conditions! {
    /// Stanza error conditions, RFC 6120 §8.3.3. Serializes as the element name.
    StanzaErrorCondition, "stanza" {
        BadRequest => "bad-request",
        Conflict => "conflict",
        FeatureNotImplemented => "feature-not-implemented",
        Forbidden => "forbidden",
        Gone => "gone",
        InternalServerError => "internal-server-error",
        ItemNotFound => "item-not-found",
        JidMalformed => "jid-malformed",
        NotAcceptable => "not-acceptable",
        NotAllowed => "not-allowed",
        NotAuthorized => "not-authorized",
        PolicyViolation => "policy-violation",
        RecipientUnavailable => "recipient-unavailable",
        Redirect => "redirect",
        RegistrationRequired => "registration-required",
        RemoteServerNotFound => "remote-server-not-found",
        RemoteServerTimeout => "remote-server-timeout",
        ResourceConstraint => "resource-constraint",
        ServiceUnavailable => "service-unavailable",
        SubscriptionRequired => "subscription-required",
        UndefinedCondition => "undefined-condition",
        UnexpectedRequest => "unexpected-request",
    }
}

/// A condition name that RFC 6120 does not define.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} error condition {name:?}")]
pub struct UnknownCondition {
    /// `stream` or `stanza`.
    pub kind: &'static str,
    /// The name that was not recognised.
    pub name: String,
}

/// What a violation obliges the receiver to answer: a stream error closes the stream,
/// a stanza error bounces one stanza.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "level", content = "condition", rename_all = "lowercase")]
pub enum ErrorCondition {
    /// Answer with `<stream:error>` and close the stream.
    Stream(StreamErrorCondition),
    /// Answer with a stanza of type `error`.
    Stanza(StanzaErrorCondition),
}

impl fmt::Display for ErrorCondition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorCondition::Stream(c) => write!(f, "stream error {c}"),
            ErrorCondition::Stanza(c) => write!(f, "stanza error {c}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stream_conditions_round_trip_through_their_names() {
        assert_eq!(StreamErrorCondition::ALL.len(), 25);
        for c in StreamErrorCondition::ALL {
            assert_eq!(c.as_str().parse::<StreamErrorCondition>(), Ok(*c));
            assert_eq!(
                serde_json::to_string(c).unwrap(),
                format!("\"{}\"", c.as_str())
            );
        }
    }

    #[test]
    fn stanza_conditions_round_trip_through_their_names() {
        assert_eq!(StanzaErrorCondition::ALL.len(), 22);
        for c in StanzaErrorCondition::ALL {
            assert_eq!(c.as_str().parse::<StanzaErrorCondition>(), Ok(*c));
        }
    }

    #[test]
    fn unknown_condition_is_refused_with_its_name() {
        let err = "not-a-condition"
            .parse::<StreamErrorCondition>()
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "unknown stream error condition \"not-a-condition\""
        );
    }

    #[test]
    fn error_condition_serializes_with_level() {
        let c = ErrorCondition::Stanza(StanzaErrorCondition::BadRequest);
        assert_eq!(
            serde_json::to_string(&c).unwrap(),
            r#"{"level":"stanza","condition":"bad-request"}"#
        );
    }
}
