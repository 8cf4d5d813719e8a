//! A notification's chart: the last candles of a series as an 800×450 PNG — candles, volume
//! below, the alert's level as a dashed line, the signal's candle marked, the symbol and
//! the time in the reader's time zone. Pure (candles in, PNG bytes out), drawn with
//! `plotters` on a bitmap and the font embedded in the binary (DejaVu Sans Mono, its
//! licence in `assets/`), so no system font or browser is needed.

use std::sync::Once;

use plotters::prelude::*;
use plotters::style::FontStyle;
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use tickwatch_schema::display::{self, Tz};
use tickwatch_schema::wire::{Candle, ChartRequest};

use crate::Error;

pub const WIDTH: u32 = 800;
pub const HEIGHT: u32 = 450;
/// The most candles drawn (a request for more is cut to this).
pub const MAX_BARS: usize = 200;

const FONT: &str = "tickwatch-mono";
static FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSansMono.ttf");

fn register_font() -> Result<(), Error> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = plotters::style::register_font(FONT, FontStyle::Normal, FONT_BYTES)
            .map_err(|_| Error::Chart("the embedded font does not load".into()));
    });
    result
}

const UP: RGBColor = RGBColor(214, 46, 46);
const DOWN: RGBColor = RGBColor(30, 100, 220);
const GRID: RGBColor = RGBColor(225, 228, 232);
const TEXT: RGBColor = RGBColor(40, 44, 52);
const LEVEL: RGBColor = RGBColor(230, 140, 0);

fn f(d: Decimal) -> f64 {
    d.to_f64().unwrap_or(0.0)
}

/// Draws `candles` (oldest first, the request's series) as a PNG.
pub fn render(request: &ChartRequest, candles: &[Candle], tz: Tz) -> Result<Vec<u8>, Error> {
    let candles = &candles[candles.len().saturating_sub(MAX_BARS)..];
    if candles.len() < 2 {
        return Err(Error::Chart(format!(
            "{} candle(s) of {} {}: too few to draw",
            candles.len(),
            request.symbol,
            request.interval
        )));
    }
    register_font()?;
    let mut low = candles.iter().map(|c| f(c.low)).fold(f64::MAX, f64::min);
    let mut high = candles.iter().map(|c| f(c.high)).fold(f64::MIN, f64::max);
    if let Some(level) = request.level {
        low = low.min(f(level));
        high = high.max(f(level));
    }
    let pad = ((high - low) * 0.06).max(high.abs() * 1e-6).max(1e-9);
    let (low, high) = (low - pad, high + pad);
    let max_volume = candles
        .iter()
        .map(|c| f(c.volume))
        .fold(0.0_f64, f64::max)
        .max(1e-12);
    let n = candles.len();
    let mut buffer = vec![255_u8; (WIDTH * HEIGHT * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut buffer, (WIDTH, HEIGHT)).into_drawing_area();
        let draw = |e: DrawingAreaErrorKind<_>| Error::Chart(e.to_string());
        root.fill(&WHITE).map_err(draw)?;
        let last = &candles[n - 1];
        let at = last.open_ts + last.interval.as_ms();
        let title = format!(
            "{}  {}  {}  {}",
            request.symbol,
            request.interval,
            display::format_price(last.close, &request.venue, &request.symbol),
            display::format_time_short(at, tz)
        );
        root.draw(&Text::new(
            title,
            (12, 8),
            (FONT, 18).into_font().color(&TEXT),
        ))
        .map_err(draw)?;
        let (prices, volumes) = root
            .margin(34, 6, 8, 8)
            .split_vertically((HEIGHT - 40) * 4 / 5);
        let x_range = -0.6_f64..(n as f64 - 0.4);
        let mut chart = ChartBuilder::on(&prices)
            .y_label_area_size(86)
            .build_cartesian_2d(x_range.clone(), low..high)
            .map_err(draw)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .disable_x_axis()
            .light_line_style(GRID)
            .bold_line_style(GRID)
            .y_labels(6)
            .y_label_style((FONT, 12).into_font().color(&TEXT))
            .y_label_formatter(&|v| {
                let d = Decimal::from_f64_retain(*v).unwrap_or_default();
                display::format_number(d.round_dp(if v.abs() >= 100.0 { 0 } else { 4 }))
            })
            .draw()
            .map_err(draw)?;
        let width = (560.0 / n as f64).clamp(1.0, 12.0) as u32;
        chart
            .draw_series(candles.iter().enumerate().map(|(i, c)| {
                CandleStick::new(
                    i as f64,
                    f(c.open),
                    f(c.high),
                    f(c.low),
                    f(c.close),
                    UP.filled(),
                    DOWN.filled(),
                    width,
                )
            }))
            .map_err(draw)?;
        if let Some(level) = request.level {
            let y = f(level);
            // Dashed: short segments across the width.
            let dashes = (0..n * 2).step_by(2).map(|k| {
                let x0 = k as f64 / 2.0 - 0.5;
                PathElement::new(vec![(x0, y), (x0 + 0.3, y)], LEVEL.stroke_width(2))
            });
            chart.draw_series(dashes).map_err(draw)?;
        }
        if let Some(ts) = request.marker_ts {
            // The candle the signal or firing came from: its bar holds `ts`, or closes at it.
            if let Some(i) = candles
                .iter()
                .position(|c| c.open_ts <= ts && ts <= c.open_ts + c.interval.as_ms())
            {
                let c = &candles[i];
                let below = f(c.low) - (high - low) * 0.035;
                chart
                    .draw_series(std::iter::once(TriangleMarker::new(
                        (i as f64, below),
                        8,
                        LEVEL.filled(),
                    )))
                    .map_err(draw)?;
            }
        }
        let mut volume = ChartBuilder::on(&volumes)
            .y_label_area_size(86)
            .build_cartesian_2d(x_range, 0.0..max_volume * 1.05)
            .map_err(draw)?;
        volume
            .draw_series(candles.iter().enumerate().map(|(i, c)| {
                let color = if c.close >= c.open { UP } else { DOWN };
                let half = 0.35;
                Rectangle::new(
                    [(i as f64 - half, 0.0), (i as f64 + half, f(c.volume))],
                    color.mix(0.45).filled(),
                )
            }))
            .map_err(draw)?;
        root.present().map_err(draw)?;
    }
    encode_png(&buffer)
}

fn encode_png(rgb: &[u8]) -> Result<Vec<u8>, Error> {
    let mut out = Vec::with_capacity(64 * 1024);
    {
        let mut encoder = png::Encoder::new(&mut out, WIDTH, HEIGHT);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        encoder.set_compression(png::Compression::Fast);
        let mut writer = encoder
            .write_header()
            .map_err(|e| Error::Chart(e.to_string()))?;
        writer
            .write_image_data(rgb)
            .map_err(|e| Error::Chart(e.to_string()))?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tickwatch_schema::wire::Interval;

    fn candles(n: usize) -> Vec<Candle> {
        (0..n)
            .map(|i| {
                let base = Decimal::from(70_000 + (i as i64 % 17) * 150 - (i as i64 % 5) * 90);
                Candle {
                    venue: "krx".into(),
                    symbol: "005930".into(),
                    interval: Interval::H1,
                    open_ts: 1_765_000_000_000 + i as i64 * 3_600_000,
                    open: base,
                    high: base + Decimal::from(400),
                    low: base - Decimal::from(300),
                    close: base + Decimal::from(if i % 2 == 0 { 200 } else { -100 }),
                    volume: Decimal::from(1_000 + i as i64 * 37 % 900),
                    trades: None,
                    closed: true,
                }
            })
            .collect()
    }

    #[test]
    fn a_chart_is_an_800_by_450_png_under_200_kb() {
        let bars = candles(60);
        let request = ChartRequest {
            venue: "krx".into(),
            symbol: "005930".into(),
            interval: Interval::H1,
            level: Some(Decimal::from(71_000)),
            marker_ts: Some(bars[50].open_ts + 3_600_000),
            bars: 60,
        };
        let png =
            render(&request, &bars, tickwatch_schema::display::KOREAN_DEFAULT).expect("drawn");
        // To look at it: TICKWATCH_CHART_OUT=/tmp/chart.png cargo test -p tickwatch-notifier chart
        if let Ok(path) = std::env::var("TICKWATCH_CHART_OUT") {
            std::fs::write(path, &png).expect("written");
        }
        assert!(png.len() < 200 * 1024, "{} bytes", png.len());
        let decoder = png::Decoder::new(std::io::Cursor::new(&png));
        let reader = decoder.read_info().expect("a PNG");
        let info = reader.info();
        assert_eq!((info.width, info.height), (WIDTH, HEIGHT));
    }

    #[test]
    fn too_few_candles_is_an_error_not_a_blank_picture() {
        let request = ChartRequest {
            venue: "krx".into(),
            symbol: "005930".into(),
            interval: Interval::H1,
            level: None,
            marker_ts: None,
            bars: 60,
        };
        assert!(render(&request, &candles(1), Tz::UTC).is_err());
    }
}
