//! `GET /tiles/{z}/{x}/{y}`: the offline basemap, from an MBTiles file (a SQLite file of
//! map tiles, as QGIS, gdal or TileMill export them), for stations with no internet.
//!
//! MBTiles rows count from the south (TMS); the web map asks in XYZ, counting from the
//! north: row = 2^z - 1 - y.

use std::path::{Path, PathBuf};

use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::Serialize;
use trellis_web::ApiError;

use super::AppState;

/// What the web app needs to know of the basemap.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Basemap {
    #[serde(skip)]
    pub path: PathBuf,
    pub min_zoom: u8,
    pub max_zoom: u8,
    pub format: String,
}

impl Basemap {
    /// Reads the file's zoom range and image format; an error says why it is not usable.
    pub fn open(path: &Path) -> Result<Basemap, String> {
        let conn = connect(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let meta = |name: &str| -> Option<String> {
            conn.query_row("SELECT value FROM metadata WHERE name = ?1", [name], |r| {
                r.get(0)
            })
            .optional()
            .ok()
            .flatten()
        };
        let (min, max): (Option<u8>, Option<u8>) = conn
            .query_row(
                "SELECT MIN(zoom_level), MAX(zoom_level) FROM tiles",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(|e| format!("{}: no tiles table ({e})", path.display()))?;
        let (Some(min_zoom), Some(max_zoom)) = (min, max) else {
            return Err(format!("{}: holds no tiles", path.display()));
        };
        let format = meta("format").unwrap_or_else(|| "png".into());
        if content_type(&format).is_none() {
            return Err(format!(
                "{}: tiles are {format:?}; raster png, jpg or webp are served",
                path.display()
            ));
        }
        Ok(Basemap {
            path: path.to_path_buf(),
            min_zoom,
            max_zoom,
            format,
        })
    }
}

fn connect(path: &Path) -> rusqlite::Result<Connection> {
    Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
}

fn content_type(format: &str) -> Option<&'static str> {
    match format {
        "png" => Some("image/png"),
        "jpg" | "jpeg" => Some("image/jpeg"),
        "webp" => Some("image/webp"),
        _ => None,
    }
}

/// A tile of the offline basemap (the MBTiles file `api.mbtiles` names), in XYZ numbering.
#[utoipa::path(get, path = "/tiles/{z}/{x}/{y}", tag = "station",
    security(("token" = []), ("access_token" = [])),
    params(("z" = u8, Path, maximum = 30), ("x" = u32, Path),
        ("y" = String, Path, pattern = r"^[0-9]+(\.[a-z]+)?$",
            description = "the row, optionally with an extension (`5.png`)")),
    responses((status = 200, description = "the tile image, in the file's format",
        content_type = "image/*", body = Vec<u8>),
        trellis_web::openapi::ReadRefusals))]
pub async fn tile(
    State(s): State<AppState>,
    trellis_web::Path((z, x, y)): trellis_web::Path<(u8, u32, String)>,
) -> Result<Response, ApiError> {
    let Some(basemap) = s.basemap.clone() else {
        return Err(ApiError::not_found(
            "this station has no basemap (api.mbtiles)",
        ));
    };
    // Leaflet may ask for `5.png`; the extension is the file's format either way.
    let row = y.split('.').next().unwrap_or_default();
    if row.is_empty() || !row.bytes().all(|b| b.is_ascii_digit()) {
        return Err(ApiError::invalid("y", "a tile row number"));
    }
    // A tile outside the zoom level's grid is one the file cannot have.
    let y = match row.parse::<u32>() {
        Ok(y) if z <= 30 && x < 1 << z && y < 1 << z => y,
        _ => return Err(ApiError::not_found("no such tile at this zoom")),
    };
    let row = (1u32 << z) - 1 - y;
    let path = basemap.path.clone();
    let data: Option<Vec<u8>> = tokio::task::spawn_blocking(move || {
        connect(&path)?
            .query_row(
                "SELECT tile_data FROM tiles WHERE zoom_level = ?1 AND tile_column = ?2 AND tile_row = ?3",
                rusqlite::params![z, x, row],
                |r| r.get(0),
            )
            .optional()
    })
    .await
    .map_err(ApiError::internal)?
    .map_err(ApiError::internal)?;
    let Some(data) = data else {
        return Err(ApiError::not_found("no tile there"));
    };
    let kind = content_type(&basemap.format).unwrap_or("application/octet-stream");
    Ok((
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(kind)),
            (
                header::CACHE_CONTROL,
                HeaderValue::from_static("private, max-age=86400"),
            ),
        ],
        data,
    )
        .into_response())
}
