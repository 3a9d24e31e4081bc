//! Pagination of lists. Every list answers a page and `next`, `null` on its last page.
//!
//! Two orders, two cursors:
//! - logs (alerts, events, parameter changes) come newest first, and `before` takes the `next`
//!   of the page before ([`PageParams`]);
//! - collections named by a key (vehicles, fields, links, stations) come in key order, and
//!   `after` takes the `next` of the page before ([`KeyPageParams`], [`by_key`]). A key
//!   cursor stays right while items come and go: nothing is skipped or repeated but what was
//!   added or removed meanwhile.

use serde::Deserialize;

use crate::ApiError;

/// The pagination parameters of a list request.
#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct PageParams {
    /// How many items, newest first (default 100).
    #[param(minimum = 1, maximum = 10_000)]
    pub limit: Option<u32>,
    /// Only items older than this position (the `next` of the page before).
    pub before: Option<i64>,
}

impl PageParams {
    /// The limit asked for, `default` when none, refused outside `1..=max`.
    pub fn limit(&self, default: u32, max: u32) -> Result<u32, ApiError> {
        limit(self.limit, default, max)
    }
}

/// The pagination parameters of a list in key order.
#[derive(Debug, Clone, Default, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct KeyPageParams {
    /// How many items, in key order (default 100; a vehicle's parameters 1000).
    #[param(minimum = 1, maximum = 1_000)]
    pub limit: Option<u32>,
    /// Only items after this key (the `next` of the page before).
    #[param(max_length = 200)]
    pub after: Option<String>,
}

/// The largest page of a list in key order.
pub const KEY_PAGE_MAX: u32 = 1_000;

/// The longest key a list in key order has (record keys are at most 200 characters).
pub const KEY_MAX_LEN: usize = 200;

impl KeyPageParams {
    /// The limit asked for (default 100), refused outside `1..=1000`.
    pub fn limit(&self) -> Result<u32, ApiError> {
        limit(self.limit, 100, KEY_PAGE_MAX)
    }

    /// `after` read as the list's key type; a value that is not one is refused by name.
    pub fn after<K: std::str::FromStr>(&self) -> Result<Option<K>, ApiError> {
        self.after
            .as_deref()
            .map(|a| {
                (a.len() <= KEY_MAX_LEN)
                    .then(|| a.parse().ok())
                    .flatten()
                    .ok_or_else(|| ApiError::invalid("after", "not a `next` this list gave"))
            })
            .transpose()
    }
}

/// One page of `items` in key order, and the `after` of the page that follows (`None` when
/// nothing follows). For collections a daemon holds whole (the fleet, its links): the items
/// come in any order.
pub fn by_key<T, K: Ord + std::str::FromStr + ToString>(
    mut items: Vec<T>,
    page: &KeyPageParams,
    key: impl Fn(&T) -> K,
) -> Result<(Vec<T>, Option<String>), ApiError> {
    let limit = page.limit()? as usize;
    let after: Option<K> = page.after()?;
    items.sort_by_key(|item| key(item));
    let start = after.map_or(0, |a| items.partition_point(|item| key(item) <= a));
    let mut rest: Vec<T> = items.drain(start..).collect();
    let more = rest.len() > limit;
    rest.truncate(limit);
    let next = if more {
        rest.last().map(|item| key(item).to_string())
    } else {
        None
    };
    Ok((rest, next))
}

/// An integer as the API writes it: digits, `-` first if negative. (Rust's own parse also
/// takes `+5`, which a cursor this API gave never holds.)
pub fn parse_int<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.starts_with('+') {
        return None;
    }
    text.parse().ok()
}

/// A page from up to `limit + 1` items read in the list's order: the first `limit`, and the
/// cursor of the last of them when an item follows it (`None`: this page is the last, so a
/// walk never ends on an empty page).
pub fn split<T, C>(mut items: Vec<T>, limit: u32, cursor: impl Fn(&T) -> C) -> (Vec<T>, Option<C>) {
    let more = items.len() > limit as usize;
    items.truncate(limit as usize);
    let next = if more { items.last().map(cursor) } else { None };
    (items, next)
}

/// `limit`, `default` when absent, refused (naming the field) outside `1..=max`.
pub fn limit(value: Option<u32>, default: u32, max: u32) -> Result<u32, ApiError> {
    match value {
        None => Ok(default),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(_) => Err(ApiError::invalid(
            "limit",
            format!("must be between 1 and {max}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_page_points_at_the_next_only_when_an_item_follows() {
        assert_eq!(split(vec![9, 8, 7, 6], 3, |x| *x), (vec![9, 8, 7], Some(7)));
        assert_eq!(split(vec![9, 8, 7], 3, |x| *x), (vec![9, 8, 7], None));
        assert_eq!(split(vec![9, 8], 3, |x| *x), (vec![9, 8], None));
        assert_eq!(split(Vec::<i64>::new(), 3, |x| *x), (vec![], None));
    }

    #[test]
    fn a_key_order_walk_returns_every_item_once_and_ends_with_no_next() {
        let items: Vec<u8> = vec![9, 1, 250, 3, 7, 42, 2];
        let mut seen = Vec::new();
        let mut page = KeyPageParams {
            limit: Some(3),
            after: None,
        };
        loop {
            let (items, next) = by_key(items.clone(), &page, |x| *x).unwrap();
            assert!(items.len() <= 3);
            seen.extend(items);
            match next {
                Some(n) => page.after = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, vec![1, 2, 3, 7, 9, 42, 250]);
        // Exactly a page: no `next` pointing at an empty page.
        let (items, next) = by_key(
            vec![1u8, 2, 3],
            &KeyPageParams {
                limit: Some(3),
                after: None,
            },
            |x| *x,
        )
        .unwrap();
        assert_eq!((items.len(), next), (3, None));
    }

    #[test]
    fn a_cursor_that_is_not_a_key_is_refused_by_name() {
        let page = KeyPageParams {
            limit: None,
            after: Some("V-08".into()),
        };
        let e = by_key(vec![1u8], &page, |x| *x).unwrap_err();
        assert_eq!(e.field.as_deref(), Some("after"));
    }

    #[test]
    fn a_limit_is_bounded_and_named_when_wrong() {
        assert_eq!(limit(None, 100, 1000).unwrap(), 100);
        assert_eq!(limit(Some(1000), 100, 1000).unwrap(), 1000);
        for bad in [0, 1001] {
            assert_eq!(
                limit(Some(bad), 100, 1000).unwrap_err().field.as_deref(),
                Some("limit")
            );
        }
    }
}
