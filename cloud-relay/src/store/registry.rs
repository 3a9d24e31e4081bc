//! The vehicle registry's rule, in one place for every backend: what registering a vehicle's
//! identity (heard by one edge as one system id) does, given what the store already holds.
//! The backends read the two facts, call [`registration`], and carry out its answer.

/// What to do with a sighting (edge, system id) whose vehicle reported its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registration {
    /// The sighting already names the right vehicle.
    Keep(i64),
    /// The uid names a vehicle another edge registered: move the sighting from `from` to
    /// `to` (and drop `from` if nothing sees it any more).
    Repoint { from: i64, to: i64 },
    /// The uid is new to the org and the sighting's vehicle has none: it takes the uid.
    TakeUid(i64),
    /// The sighting's vehicle has another uid (a swapped flight controller): a new vehicle
    /// takes the sighting from `from`.
    Replace { from: i64 },
    /// A first sighting of a vehicle the org knows by its uid.
    Sight(i64),
    /// A first sighting of a vehicle new to the org.
    New,
}

/// `current`: the vehicle the sighting names now, and whether it has a uid; `by_uid`: the
/// org's vehicle with the reported uid; `uid_reported`: whether the identity carried one.
pub fn registration(
    current: Option<(i64, bool)>,
    by_uid: Option<i64>,
    uid_reported: bool,
) -> Registration {
    match (current, by_uid) {
        (Some((id, _)), Some(known)) if id == known => Registration::Keep(id),
        (Some((from, _)), Some(to)) => Registration::Repoint { from, to },
        (Some((id, false)), None) => Registration::TakeUid(id),
        (Some((id, true)), None) if !uid_reported => Registration::Keep(id),
        (Some((from, true)), None) => Registration::Replace { from },
        (None, Some(known)) => Registration::Sight(known),
        (None, None) => Registration::New,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_case_of_the_rule() {
        use Registration::*;
        assert_eq!(registration(Some((1, true)), Some(1), true), Keep(1));
        assert_eq!(
            registration(Some((1, false)), Some(2), true),
            Repoint { from: 1, to: 2 }
        );
        assert_eq!(registration(Some((1, false)), None, true), TakeUid(1));
        assert_eq!(registration(Some((1, true)), None, false), Keep(1));
        assert_eq!(
            registration(Some((1, true)), None, true),
            Replace { from: 1 }
        );
        assert_eq!(registration(None, Some(2), true), Sight(2));
        assert_eq!(registration(None, None, false), New);
    }
}
