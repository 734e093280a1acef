//! The seed's string enums. Each value's wire spelling is fixed by the seed.

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$doc:meta])* $name:ident { $( $variant:ident = $text:literal ),* $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        pub enum $name { $( $variant ),* }

        impl $name {
            pub const ALL: &'static [$name] = &[$($name::$variant),*];

            pub fn as_str(self) -> &'static str {
                match self { $( $name::$variant => $text ),* }
            }

            /// JSON Schema: one of the texts.
            pub fn schema() -> serde_json::Value {
                serde_json::json!({"type": "string", "enum": [$($text),*]})
            }

            pub fn parse(text: &str) -> Result<Self, String> {
                match text {
                    $( $text => Ok($name::$variant), )*
                    _ => Err(format!(
                        "must be one of {}",
                        [$($text),*].iter().map(|t| format!("\"{t}\"")).collect::<Vec<_>>().join(", ")
                    )),
                }
            }
        }
    };
}

string_enum!(
    /// A registration's lifecycle status.
    RegistrationStatus {
        Draft = "draft",
        Registered = "registered",
        Attended = "attended",
        NoShow = "no show",
        Cancelled = "cancelled",
        InProgress = "in progress",
        Completed = "completed",
    }
);

impl RegistrationStatus {
    /// Active registrations hold a seat: the `includeActiveOnly` filter and capacity count them.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RegistrationStatus::Registered
                | RegistrationStatus::InProgress
                | RegistrationStatus::Attended
                | RegistrationStatus::Completed
        )
    }
}

string_enum!(
    /// The status of the order a registration is paid through.
    OrderStatus {
        AwaitingPayment = "awaiting payment",
        AwaitingShipping = "awaiting shipping",
        AwaitingPickup = "awaiting pickup",
        PartiallyShipped = "partially shipped",
        Shipped = "shipped",
        Completed = "completed",
        Cancelled = "cancelled",
        Disputed = "disputed",
        Open = "open",
        Returned = "returned",
        Void = "void",
    }
);

string_enum!(
    /// Whether the training provider has been billed for a registration.
    BillingStatus {
        ExemptFromBilling = "exempt from billing",
        NotYetBilled = "not yet billed",
        BillingHold = "billing hold",
        Billed = "billed",
    }
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_spelling_round_trips() {
        for s in RegistrationStatus::ALL {
            assert_eq!(RegistrationStatus::parse(s.as_str()), Ok(*s));
        }
        for s in OrderStatus::ALL {
            assert_eq!(OrderStatus::parse(s.as_str()), Ok(*s));
        }
        for s in BillingStatus::ALL {
            assert_eq!(BillingStatus::parse(s.as_str()), Ok(*s));
        }
        assert!(RegistrationStatus::parse("Draft").is_err());
    }
}
