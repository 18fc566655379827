//! The list endpoints' pages (`{"data": [...], "next_cursor": …}`), followed
//! one `cursor` after the other: what `call --all` prints.
//!
//! ```no_run
//! # async fn example(client: keygate_client::Client) -> Result<(), keygate_client::Error> {
//! let mut orders = client.pages("/api/v1/orders?status=paid");
//! while let Some(order) = orders.next_item().await? {
//!     println!("{}", order["id"]);
//! }
//! # Ok(()) }
//! ```

use std::collections::VecDeque;

use serde::Deserialize;

use crate::client::Client;
use crate::error::Error;

/// The items of a list endpoint, page by page. Every page is one GET with
/// the client's refresh and retries.
pub struct Pages {
    client: Client,
    path: String,
    /// `None` before the first page; `Some(None)` after the last.
    cursor: Option<Option<String>>,
    items: VecDeque<serde_json::Value>,
}

#[derive(Deserialize)]
struct Page {
    data: Vec<serde_json::Value>,
    #[serde(default)]
    next_cursor: Option<String>,
}

impl Client {
    /// The items of the list at `path` (which may carry `limit` and
    /// filters), following `next_cursor`.
    pub fn pages(&self, path: &str) -> Pages {
        Pages { client: self.clone(), path: path.to_owned(), cursor: None, items: VecDeque::new() }
    }
}

impl Pages {
    /// The next page's items; `None` after the last page.
    pub async fn next_page(&mut self) -> Result<Option<Vec<serde_json::Value>>, Error> {
        let path = match &self.cursor {
            None => self.path.clone(),
            Some(None) => return Ok(None),
            Some(Some(cursor)) => with_cursor(&self.path, cursor)?,
        };
        let response = self.client.get(&path).await?;
        let page: Page = serde_json::from_slice(&response.body).map_err(|e| {
            Error::Protocol(format!("GET {path} did not answer a page ({{\"data\": [...], \"next_cursor\": …}}): {e}"))
        })?;
        if page.next_cursor.is_some() && self.cursor.as_ref().and_then(Option::as_ref) == page.next_cursor.as_ref() {
            return Err(Error::Protocol(format!("GET {path} answered the same next_cursor again; stopping")));
        }
        self.cursor = Some(page.next_cursor);
        Ok(Some(page.data))
    }

    /// The next item; `None` after the last.
    pub async fn next_item(&mut self) -> Result<Option<serde_json::Value>, Error> {
        while self.items.is_empty() {
            match self.next_page().await? {
                Some(items) => self.items.extend(items),
                None => return Ok(None),
            }
        }
        Ok(self.items.pop_front())
    }

    /// Every item.
    pub async fn collect_all(mut self) -> Result<Vec<serde_json::Value>, Error> {
        let mut all = Vec::new();
        while let Some(items) = self.next_page().await? {
            all.extend(items);
        }
        Ok(all)
    }
}

/// `path` with its `cursor` parameter set (any other parameter kept).
fn with_cursor(path: &str, cursor: &str) -> Result<String, Error> {
    let mut url = url::Url::parse("http://keygate.invalid")
        .and_then(|base| base.join(path))
        .map_err(|e| Error::Invalid(format!("the path `{path}` is not a URL path: {e}")))?;
    let kept: Vec<(String, String)> =
        url.query_pairs().filter(|(name, _)| name != "cursor").map(|(n, v)| (n.into_owned(), v.into_owned())).collect();
    url.query_pairs_mut().clear().extend_pairs(kept).append_pair("cursor", cursor);
    Ok(format!("{}?{}", url.path(), url.query().unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cursor_replaces_any_other_and_keeps_the_filters() {
        assert_eq!(with_cursor("/api/v1/orders", "abc").unwrap(), "/api/v1/orders?cursor=abc");
        assert_eq!(
            with_cursor("/api/v1/orders?limit=2&cursor=old&status=paid", "n+1/=").unwrap(),
            "/api/v1/orders?limit=2&status=paid&cursor=n%2B1%2F%3D"
        );
    }
}
