//! Every rule between records, as a pure function over the facts it needs.
//!
//! An engine gathers the facts inside its transaction (a counter, the slot's holder, the
//! stored order) and asks the rule, so every engine enforces exactly the same rules. A rule
//! answers a `RuleViolation`: what was refused and what a message needs, never an HTTP status
//! (`crate::http::error` gives each its code and status).

use super::catalog::{CatalogKind, Reference};
use super::error::FieldError;
use super::ids::{RecordId, TenantId};
use super::registration::CourseRegistration;
use std::fmt;

/// A write refused by a rule between records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuleViolation {
    /// An active registration needs a seat and the offering has none free.
    OfferingFull {
        offering: RecordId,
        active: u64,
        capacity: u64,
    },
    /// A new capacity would be below the seats active registrations already hold.
    CapacityBelowSeats { offering: RecordId, taken: u64 },
    /// The student already holds the slot (student, offering) through another registration.
    DuplicateRegistration { student: String, holder: String },
    /// Other records depend on the one to delete.
    HasDependants(Dependants),
    /// A referenced record does not exist (or an offering is not one of the named course).
    MissingReference {
        field: &'static str,
        kind: CatalogKind,
        id: RecordId,
        of_course: Option<RecordId>,
    },
    /// The registration already has a live order.
    OrderExists {
        registration: RecordId,
        order: RecordId,
    },
    /// The tenant is at one of its limits.
    TenantLimit { tenant: TenantId, usage: Usage },
    /// The record has `sys_locked: true` and the caller is not an admin.
    RecordLocked(Locked),
    /// An outbox message is larger than the outbox keeps.
    OutboxMessageTooLarge { bytes: usize, max: usize },
    /// The tenant has as many webhook endpoints as it may.
    TooManyWebhooks { max: usize },
}

/// Why a record cannot be deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Dependants {
    /// The tenant's default confirmation template: previewEmail falls back to it.
    DefaultTemplate,
    /// Other records hold references to it.
    Referenced {
        kind: CatalogKind,
        id: RecordId,
        users: u64,
    },
    /// A registration with a live order.
    LiveOrder {
        registration: RecordId,
        order: RecordId,
    },
}

/// Which tenant limit a write would pass, and the count that shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// Registrations stored before the new one.
    Registrations { max: u64, stored: u64 },
    /// Bytes the tenant would store after the write.
    StoredBytes { max: u64, after_write: u64 },
}

/// What a lock refused: a change of the record itself, or an order for a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locked {
    Change,
    Order,
}

impl RuleViolation {
    /// The violation of `missing_reference` for a reference whose target is absent (an
    /// engine that found nothing there needs no verdict).
    pub fn missing(reference: &Reference) -> RuleViolation {
        RuleViolation::MissingReference {
            field: reference.field,
            kind: reference.kind,
            id: reference.id.clone(),
            of_course: reference.of_course.clone(),
        }
    }

    /// The fields the violation is about, for the error's `details`.
    pub fn details(&self) -> Vec<FieldError> {
        match self {
            RuleViolation::MissingReference { field, .. } => vec![FieldError::new(
                *field,
                "refers to a record that does not exist",
            )],
            _ => Vec::new(),
        }
    }
}

impl fmt::Display for RuleViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleViolation::OfferingFull {
                offering,
                active,
                capacity,
            } => write!(
                f,
                "course offering {offering} is full ({active} of {capacity} seats taken)"
            ),
            RuleViolation::CapacityBelowSeats { offering, taken } => write!(
                f,
                "course offering {offering} has {taken} active registrations: capacity cannot \
                 be lower than that (cancel registrations first)"
            ),
            RuleViolation::DuplicateRegistration { student, holder } => write!(
                f,
                "student {student} already has registration {holder} for this course offering"
            ),
            RuleViolation::HasDependants(Dependants::DefaultTemplate) => f.write_str(
                "the tenant's default confirmation template cannot be deleted; change it instead",
            ),
            RuleViolation::HasDependants(Dependants::Referenced { kind, id, users }) => {
                write!(f, "{} {id} is used by {users} other record(s)", kind.noun())
            }
            RuleViolation::HasDependants(Dependants::LiveOrder {
                registration,
                order,
            }) => write!(
                f,
                "registration {registration} has a live order ({order}); cancel or void it first"
            ),
            RuleViolation::MissingReference {
                kind,
                id,
                of_course,
                ..
            } => match of_course {
                Some(course) => write!(
                    f,
                    "{} {id} does not exist or is not an offering of course {course}",
                    kind.noun()
                ),
                None => write!(f, "{} {id} does not exist", kind.noun()),
            },
            RuleViolation::OrderExists {
                registration,
                order,
            } => write!(
                f,
                "registration {registration} already has a live order ({order})"
            ),
            RuleViolation::TenantLimit { tenant, usage } => match usage {
                Usage::Registrations { max, stored } => write!(
                    f,
                    "tenant {tenant} may store at most {max} registrations and has {stored}"
                ),
                Usage::StoredBytes { max, after_write } => write!(
                    f,
                    "tenant {tenant} may store at most {max} bytes; this write would make it \
                     {after_write}"
                ),
            },
            RuleViolation::RecordLocked(Locked::Change) => f.write_str(
                "the record is locked (sys_locked); only an admin key may change or delete it",
            ),
            RuleViolation::RecordLocked(Locked::Order) => {
                f.write_str("the registration is locked (sys_locked)")
            }
            RuleViolation::OutboxMessageTooLarge { bytes, max } => write!(
                f,
                "the message is {bytes} bytes (address, subject, html and text); the outbox \
                 keeps messages of at most {max} bytes"
            ),
            RuleViolation::TooManyWebhooks { max } => write!(
                f,
                "the tenant has {max} webhook endpoints, as many as a tenant may; delete one first"
            ),
        }
    }
}

impl std::error::Error for RuleViolation {}

/// The offering in which `new`, replacing `old`, takes a seat it did not hold: its offering
/// when it is active, unless `old` already held a seat there. Only then is capacity checked.
pub fn seat_to_take<'a>(
    old: Option<&CourseRegistration>,
    new: &'a CourseRegistration,
) -> Option<&'a RecordId> {
    let seat = new.seat()?;
    (old.and_then(CourseRegistration::seat) != Some(seat)).then_some(seat)
}

/// A registration that takes a new seat in `offering` needs one free: fewer than `capacity`
/// `active` ones. An offering without a capacity has room for any number.
pub fn offering_full(
    offering: &RecordId,
    capacity: Option<u64>,
    active: u64,
) -> Result<(), RuleViolation> {
    match capacity {
        Some(capacity) if active >= capacity => Err(RuleViolation::OfferingFull {
            offering: offering.clone(),
            active,
            capacity,
        }),
        _ => Ok(()),
    }
}

/// A capacity may not drop below the seats taken: the registrations holding them would be
/// over capacity with no rule to say which one is out. (Exactly the seats taken closes the
/// offering to new active registrations.)
pub fn capacity_below_seats(
    offering: &RecordId,
    capacity: Option<u64>,
    taken: u64,
) -> Result<(), RuleViolation> {
    match capacity {
        Some(capacity) if capacity < taken => Err(RuleViolation::CapacityBelowSeats {
            offering: offering.clone(),
            taken,
        }),
        _ => Ok(()),
    }
}

/// One student, one live registration per offering: the slot's `holder`, if any, must be the
/// registration being written.
pub fn duplicate_registration(
    registration: &RecordId,
    student: Option<&RecordId>,
    holder: Option<&str>,
) -> Result<(), RuleViolation> {
    match holder {
        Some(holder) if holder != registration.as_str() => {
            Err(RuleViolation::DuplicateRegistration {
                student: student.map(|s| s.as_str().to_owned()).unwrap_or_default(),
                holder: holder.to_owned(),
            })
        }
        _ => Ok(()),
    }
}

/// A catalog record that `users` other records refer to cannot be deleted, nor can the
/// tenant's default template (`is_default_template`).
pub fn has_dependants(
    kind: CatalogKind,
    id: &RecordId,
    is_default_template: bool,
    users: u64,
) -> Result<(), RuleViolation> {
    if is_default_template {
        return Err(RuleViolation::HasDependants(Dependants::DefaultTemplate));
    }
    if users > 0 {
        return Err(RuleViolation::HasDependants(Dependants::Referenced {
            kind,
            id: id.clone(),
            users,
        }));
    }
    Ok(())
}

/// A registration whose order is still live cannot be deleted.
pub fn live_order_blocks_delete(
    registration: &RecordId,
    order: Option<&RecordId>,
    order_is_live: bool,
) -> Result<(), RuleViolation> {
    match order {
        Some(order) if order_is_live => Err(RuleViolation::HasDependants(Dependants::LiveOrder {
            registration: registration.clone(),
            order: order.clone(),
        })),
        _ => Ok(()),
    }
}

/// What an engine found where a reference points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target<'a> {
    /// No record of the kind with that id.
    Absent,
    /// The record exists; for a course offering, `course` is the course it belongs to.
    Present { course: Option<&'a RecordId> },
}

/// A reference must point at an existing record, and an offering reference at an offering
/// of the course it names (`of_course`).
pub fn missing_reference(reference: &Reference, target: Target<'_>) -> Result<(), RuleViolation> {
    let holds = match target {
        Target::Absent => false,
        Target::Present { course } => reference
            .of_course
            .as_ref()
            .is_none_or(|wanted| course == Some(wanted)),
    };
    if holds {
        Ok(())
    } else {
        Err(RuleViolation::missing(reference))
    }
}

/// A registration has at most one live order: generating another is refused while
/// `existing` (its current order) is live.
pub fn order_exists(
    registration: &RecordId,
    existing: Option<&RecordId>,
    existing_is_live: bool,
) -> Result<(), RuleViolation> {
    match existing {
        Some(order) if existing_is_live => Err(RuleViolation::OrderExists {
            registration: registration.clone(),
            order: order.clone(),
        }),
        _ => Ok(()),
    }
}

/// A tenant stays within its limits: fewer than `max` registrations before a new one, and
/// at most `max` bytes after a write that grows it.
pub fn tenant_limit(tenant: &TenantId, usage: Usage) -> Result<(), RuleViolation> {
    let over = match usage {
        Usage::Registrations { max, stored } => stored >= max,
        Usage::StoredBytes { max, after_write } => after_write > max,
    };
    if over {
        Err(RuleViolation::TenantLimit {
            tenant: tenant.clone(),
            usage,
        })
    } else {
        Ok(())
    }
}

/// A locked record (`sys_locked: true`) is changed, deleted or ordered by admin keys only.
pub fn record_locked(locked: bool, is_admin: bool, refused: Locked) -> Result<(), RuleViolation> {
    if locked && !is_admin {
        Err(RuleViolation::RecordLocked(refused))
    } else {
        Ok(())
    }
}

/// The outbox keeps messages of at most `max` bytes.
/// A tenant may register one more webhook endpoint while it has fewer than `max`.
pub fn webhook_fits(existing: usize, max: usize) -> Result<(), RuleViolation> {
    if existing >= max {
        Err(RuleViolation::TooManyWebhooks { max })
    } else {
        Ok(())
    }
}

pub fn outbox_message_fits(bytes: usize, max: usize) -> Result<(), RuleViolation> {
    if bytes > max {
        Err(RuleViolation::OutboxMessageTooLarge { bytes, max })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> RecordId {
        RecordId::parse(s).expect("a valid id")
    }

    #[test]
    fn offering_full_refuses_a_seat_only_when_every_seat_is_taken() {
        let offering = id("o1");
        for (capacity, active, refused) in [
            (None, 1_000, false),
            (Some(10), 0, false),
            (Some(10), 9, false),
            (Some(10), 10, true),
            (Some(10), 11, true),
            (Some(0), 0, true),
        ] {
            let result = offering_full(&offering, capacity, active);
            assert_eq!(result.is_err(), refused, "{capacity:?} {active}");
        }
        assert_eq!(
            offering_full(&offering, Some(2), 2)
                .unwrap_err()
                .to_string(),
            "course offering o1 is full (2 of 2 seats taken)"
        );
    }

    #[test]
    fn a_seat_is_taken_only_by_an_active_registration_new_to_its_offering() {
        use crate::domain::enums::RegistrationStatus::{self, *};
        use crate::domain::registration::{CourseRegistration, RegistrationFields};
        let r = |offering: Option<&str>, status: RegistrationStatus| CourseRegistration {
            id: id("r1"),
            fields: RegistrationFields {
                course_offering_id: offering.map(id),
                status: Some(status),
                ..Default::default()
            },
        };
        for (old, new, taken) in [
            (None, r(Some("o1"), Registered), Some("o1")),
            (None, r(Some("o1"), Draft), None),
            (None, r(None, Registered), None),
            (
                Some(r(Some("o1"), Draft)),
                r(Some("o1"), Registered),
                Some("o1"),
            ),
            (
                Some(r(Some("o1"), Cancelled)),
                r(Some("o1"), Completed),
                Some("o1"),
            ),
            (
                Some(r(Some("o1"), Registered)),
                r(Some("o1"), Attended),
                None,
            ),
            (
                Some(r(Some("o1"), Registered)),
                r(Some("o2"), Registered),
                Some("o2"),
            ),
            (
                Some(r(Some("o1"), Registered)),
                r(Some("o1"), Cancelled),
                None,
            ),
        ] {
            let seat = seat_to_take(old.as_ref(), &new).map(RecordId::as_str);
            assert_eq!(seat, taken, "{old:?} -> {new:?}");
        }
    }

    #[test]
    fn capacity_may_drop_to_the_seats_taken_but_not_below() {
        let offering = id("o1");
        for (capacity, taken, refused) in [
            (None, 5, false),
            (Some(5), 5, false),
            (Some(6), 5, false),
            (Some(4), 5, true),
            (Some(0), 1, true),
        ] {
            let result = capacity_below_seats(&offering, capacity, taken);
            assert_eq!(result.is_err(), refused, "{capacity:?} {taken}");
        }
    }

    #[test]
    fn duplicate_registration_is_another_holder_of_the_slot() {
        let registration = id("r1");
        let student = id("s1");
        for (holder, refused) in [(None, false), (Some("r1"), false), (Some("r2"), true)] {
            let result = duplicate_registration(&registration, Some(&student), holder);
            assert_eq!(result.is_err(), refused, "{holder:?}");
        }
        assert_eq!(
            duplicate_registration(&registration, Some(&student), Some("r2"))
                .unwrap_err()
                .to_string(),
            "student s1 already has registration r2 for this course offering"
        );
    }

    #[test]
    fn has_dependants_refuses_referenced_records_and_the_default_template() {
        let course = id("c1");
        for (default, users, refused) in [
            (false, 0, false),
            (false, 1, true),
            (false, 7, true),
            (true, 0, true),
        ] {
            let result = has_dependants(CatalogKind::Course, &course, default, users);
            assert_eq!(result.is_err(), refused, "{default} {users}");
        }
        assert_eq!(
            has_dependants(CatalogKind::Course, &course, false, 2)
                .unwrap_err()
                .to_string(),
            "course c1 is used by 2 other record(s)"
        );
    }

    #[test]
    fn a_live_order_blocks_deleting_its_registration() {
        let (registration, order) = (id("r1"), id("ord1"));
        for (order, live, refused) in [
            (None, false, false),
            (Some(&order), false, false),
            (Some(&order), true, true),
        ] {
            let result = live_order_blocks_delete(&registration, order, live);
            assert_eq!(result.is_err(), refused, "{order:?} {live}");
        }
    }

    #[test]
    fn missing_reference_wants_the_record_and_an_offering_of_the_named_course() {
        let (c1, c2) = (id("c1"), id("c2"));
        let plain = Reference {
            field: "student_id",
            kind: CatalogKind::Contact,
            id: id("s1"),
            of_course: None,
        };
        let offering = Reference {
            field: "course_offering_id",
            kind: CatalogKind::CourseOffering,
            id: id("o1"),
            of_course: Some(c1.clone()),
        };
        for (reference, target, refused) in [
            (&plain, Target::Absent, true),
            (&plain, Target::Present { course: None }, false),
            (&offering, Target::Absent, true),
            (&offering, Target::Present { course: None }, true),
            (&offering, Target::Present { course: Some(&c2) }, true),
            (&offering, Target::Present { course: Some(&c1) }, false),
        ] {
            let result = missing_reference(reference, target);
            assert_eq!(result.is_err(), refused, "{} {target:?}", reference.field);
        }
        let violation = missing_reference(&offering, Target::Absent).unwrap_err();
        assert_eq!(
            violation.to_string(),
            "course offering o1 does not exist or is not an offering of course c1"
        );
        assert_eq!(
            violation.details(),
            vec![FieldError::new(
                "course_offering_id",
                "refers to a record that does not exist"
            )]
        );
    }

    #[test]
    fn order_exists_only_while_the_existing_order_is_live() {
        let (registration, order) = (id("r1"), id("ord1"));
        for (existing, live, refused) in [
            (None, false, false),
            (Some(&order), false, false),
            (Some(&order), true, true),
        ] {
            let result = order_exists(&registration, existing, live);
            assert_eq!(result.is_err(), refused, "{existing:?} {live}");
        }
    }

    #[test]
    fn tenant_limit_counts_registrations_before_and_bytes_after_the_write() {
        let tenant = TenantId::parse("acme").expect("a valid tenant id");
        for (usage, refused) in [
            (Usage::Registrations { max: 3, stored: 2 }, false),
            (Usage::Registrations { max: 3, stored: 3 }, true),
            (Usage::Registrations { max: 0, stored: 0 }, true),
            (
                Usage::StoredBytes {
                    max: 100,
                    after_write: 100,
                },
                false,
            ),
            (
                Usage::StoredBytes {
                    max: 100,
                    after_write: 101,
                },
                true,
            ),
        ] {
            assert_eq!(tenant_limit(&tenant, usage).is_err(), refused, "{usage:?}");
        }
    }

    #[test]
    fn record_locked_lets_only_admins_through_a_lock() {
        for (locked, admin, refused) in [
            (false, false, false),
            (false, true, false),
            (true, true, false),
            (true, false, true),
        ] {
            let result = record_locked(locked, admin, Locked::Change);
            assert_eq!(result.is_err(), refused, "{locked} {admin}");
        }
    }

    #[test]
    fn outbox_message_fits_up_to_the_limit() {
        for (bytes, refused) in [(0, false), (100, false), (101, true)] {
            assert_eq!(outbox_message_fits(bytes, 100).is_err(), refused, "{bytes}");
        }
    }
}
