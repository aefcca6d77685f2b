//! Reading an uploaded image: a multipart field `image`, or a raw body with an image type.

use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Request};
use axum::http::{header, StatusCode};
use serde::Deserialize;
use utoipa::ToSchema;

use super::error::ApiError;
use crate::image::sniff;

/// The bytes of an uploaded image (not decoded yet: the engine does that, under its limits).
pub struct ImageUpload(pub Bytes);

/// The multipart form, as documented in the OpenAPI description.
#[derive(Deserialize, ToSchema)]
#[allow(dead_code)] // only its schema is used: the body is read by `ImageUpload`
pub struct ImageForm {
    /// The image file (JPEG, PNG, WebP, GIF, BMP or TIFF).
    #[schema(value_type = String, format = Binary)]
    image: Vec<u8>,
}

impl<S: Send + Sync> FromRequest<S> for ImageUpload {
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        let content_type = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        let bytes = if content_type.starts_with("multipart/form-data") {
            let mut form = Multipart::from_request(request, state).await?;
            loop {
                let Some(field) = form.next_field().await? else {
                    return Err(ApiError::bad_request(
                        "missing_image",
                        "the form has no field named \"image\"",
                    ));
                };
                if field.name() == Some("image") {
                    break field.bytes().await?;
                }
            }
        } else if content_type.starts_with("image/")
            || content_type.starts_with("application/octet-stream")
        {
            Bytes::from_request(request, state).await?
        } else {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send the image as multipart/form-data field \"image\" or as the raw body \
                 with an image/* content type",
            ));
        };
        if bytes.is_empty() {
            return Err(ApiError::bad_request(
                "empty_body",
                "the uploaded image is empty",
            ));
        }
        Ok(ImageUpload(bytes))
    }
}

/// The file extension for stored uploads, from the bytes' signature. Never taken from the
/// client's file name, so a stored upload can only ever be served back as an image.
pub fn stored_extension(bytes: &[u8]) -> Option<&'static str> {
    Some(sniff(bytes)?.extension())
}
