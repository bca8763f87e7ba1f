//! QR codes of short URLs, rendered in-process as SVG or PNG. Pure functions.

use qrcode::render::{svg, Canvas, Pixel};
use qrcode::{EcLevel, QrCode};

pub const MIN_SIZE: u32 = 64;
pub const MAX_SIZE: u32 = 2048;
pub const DEFAULT_SIZE: u32 = 300;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Svg,
    Png,
}

impl Format {
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "svg" => Some(Self::Svg),
            "png" => Some(Self::Png),
            _ => None,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Self::Svg => "image/svg+xml",
            Self::Png => "image/png",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum QrError {
    #[error("the URL does not fit in a QR code: {0}")]
    Encode(#[from] qrcode::types::QrError),
    #[error("cannot encode the PNG: {0}")]
    Png(#[from] png::EncodingError),
}

/// The QR code of `text` at most `size` pixels wide (at least one pixel per module), with
/// the standard quiet zone. Medium error correction: readable with 15 % damaged.
pub fn render(text: &str, format: Format, size: u32) -> Result<Vec<u8>, QrError> {
    let code = QrCode::with_error_correction_level(text, EcLevel::M)?;
    Ok(match format {
        Format::Svg => code
            .render::<svg::Color>()
            .max_dimensions(size, size)
            .build()
            .into_bytes(),
        Format::Png => {
            let (width, pixels) = code.render::<Gray>().max_dimensions(size, size).build();
            let mut out = Vec::new();
            let mut encoder = png::Encoder::new(&mut out, width, width);
            encoder.set_color(png::ColorType::Grayscale);
            encoder.set_depth(png::BitDepth::Eight);
            let mut writer = encoder.write_header()?;
            writer.write_image_data(&pixels)?;
            writer.finish()?;
            out
        }
    })
}

/// An 8-bit grey pixel, for rendering into a PNG's rows.
#[derive(Debug, Clone, Copy)]
struct Gray(u8);

impl Pixel for Gray {
    type Image = (u32, Vec<u8>);
    type Canvas = GrayCanvas;

    fn default_color(color: qrcode::Color) -> Self {
        Gray(color.select(0, 255))
    }
}

struct GrayCanvas {
    width: u32,
    dark: u8,
    pixels: Vec<u8>,
}

impl Canvas for GrayCanvas {
    type Pixel = Gray;
    type Image = (u32, Vec<u8>);

    fn new(width: u32, height: u32, dark: Gray, light: Gray) -> Self {
        Self {
            width,
            dark: dark.0,
            pixels: vec![light.0; width as usize * height as usize],
        }
    }

    fn draw_dark_pixel(&mut self, x: u32, y: u32) {
        self.pixels[y as usize * self.width as usize + x as usize] = self.dark;
    }

    fn draw_dark_rect(&mut self, left: u32, top: u32, width: u32, height: u32) {
        let w = self.width as usize;
        for y in top as usize..(top + height) as usize {
            self.pixels[y * w + left as usize..y * w + (left + width) as usize].fill(self.dark);
        }
    }

    fn into_image(self) -> (u32, Vec<u8>) {
        (self.width, self.pixels)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_is_a_square_image_within_the_size() {
        let bytes = render("https://sho.rt/abc1234", Format::Png, 300).unwrap();
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let (width, height) = (reader.info().width, reader.info().height);
        assert_eq!(width, height);
        assert!((200..=300).contains(&width), "{width}");
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        reader.next_frame(&mut buf).unwrap();
        // Quiet zone white, finder pattern's corner black.
        assert_eq!(buf[0], 255);
        let module = width as usize / 33; // version 2 + 2 × 4 quiet modules
        let corner = 4 * module;
        assert_eq!(buf[corner * width as usize + corner], 0);
    }

    #[test]
    fn svg_names_its_size() {
        let svg = String::from_utf8(render("https://sho.rt/x", Format::Svg, 200).unwrap()).unwrap();
        assert!(svg.contains("<svg"), "{svg}");
        assert!(svg.contains(r#"shape-rendering="crispEdges""#));
    }
}
