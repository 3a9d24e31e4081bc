//! Pagination of lists: `limit` (how many) and `before` (an opaque position from the last
//! page's `next`), newest first. A list answers `"next": null` on its last page.

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

/// The `before` that fetches the page after `items` (newest first): the position of the
/// last item, or `None` when this page was the last (it held fewer than `limit`).
pub fn next<T>(items: &[T], limit: u32, position: impl Fn(&T) -> i64) -> Option<i64> {
    if items.len() < limit as usize {
        return None;
    }
    items.last().map(position)
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
    fn a_full_page_points_at_the_next_and_a_short_one_ends_the_list() {
        assert_eq!(next(&[9, 8, 7], 3, |x| *x), Some(7));
        assert_eq!(next(&[9, 8], 3, |x| *x), None);
        assert_eq!(next::<i64>(&[], 3, |x| *x), None);
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
