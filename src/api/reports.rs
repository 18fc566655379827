//! `/api/v1/reports/sales?from=&to=`: totals computed from orders.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{Duration, NaiveDate, NaiveTime};
use serde::Serialize;
use utoipa::ToSchema;

use super::json::{ApiError, Errors};
use crate::gate::Authenticated;
use crate::shop;
use crate::state::AppState;

/// Totals for a range of days.
#[derive(Serialize, ToSchema)]
pub struct SalesReport {
    /// First day, YYYY-MM-DD.
    pub from: String,
    /// Last day, included.
    pub to: String,
    #[serde(flatten)]
    pub totals: shop::SalesTotals,
}

pub const MAX_RANGE_DAYS: i64 = 366;

fn date(errors: &Errors, field: &str, raw: &str) -> Result<NaiveDate, ApiError> {
    if !super::rules::DAY.accepts(raw) || NaiveDate::parse_from_str(raw, "%Y-%m-%d").is_err() {
        let (first, last) = (crate::time::FIRST_DAY, crate::time::LAST_DAY);
        return Err(
            errors.invalid(field, format!("{field} is a date as YYYY-MM-DD from {first} to {last}, not `{raw}`"))
        );
    }
    crate::time::parse_day(raw).map_err(|why| errors.unprocessable(field, format!("{field}: {why}")))
}

/// Totals for the days `from` to `to`, both included (default: the last 30 days).
pub async fn sales(
    req: HttpRequest,
    auth: Authenticated,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let errors = Errors::from_request(&req);
    let query = errors.query(&req, &["from", "to"])?;
    let today = crate::db::now().date();
    let to = query.get("to").map(|raw| date(&errors, "to", raw)).transpose()?.unwrap_or(today);
    let from = query.get("from").map(|raw| date(&errors, "from", raw)).transpose()?.unwrap_or(to - Duration::days(29));
    if from > to {
        return Err(errors.unprocessable("from", "from must not be after to"));
    }
    if (to - from).num_days() >= MAX_RANGE_DAYS {
        return Err(errors.unprocessable("to", format!("a report covers at most {MAX_RANGE_DAYS} days")));
    }
    let seller = auth.seller_id();
    let (start, end) = (from.and_time(NaiveTime::MIN), (to + Duration::days(1)).and_time(NaiveTime::MIN));
    let totals =
        state.db.run(move |conn| shop::sales_totals(conn, seller, start, end)).await.map_err(|e| errors.db(e))?;
    Ok(HttpResponse::Ok().json(SalesReport { from: from.to_string(), to: to.to_string(), totals }))
}
