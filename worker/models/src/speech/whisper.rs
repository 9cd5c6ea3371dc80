//! Whisper (any size, English-only or multilingual) on candle: greedy decoding of 30 s windows,
//! batched across windows, with optional segment timestamps.

use candle_core::{DType, Device, Tensor};
use candle_transformers::models::whisper::Config;
use tokenizers::Tokenizer;
use weir_crds::ModelSpec;

use super::mel::{LogMel, SECONDS_PER_FRAME, WINDOW_SAMPLES};
use super::model::{Decoding, WhisperModel};
use crate::convert::ctranslate2::WHISPER_HEAD_DIM;
use crate::weights::Weights;
use crate::{ModelAssets, ModelError, device};

/// Seconds per timestamp token: Whisper's timestamps step by two spectrogram frames.
const SECONDS_PER_TIMESTAMP: f32 = 2.0 * SECONDS_PER_FRAME;
/// The latest timestamp a window may start with (1 s, as Whisper's own decoder allows).
const MAX_INITIAL_TIMESTAMP: usize = 50;
/// Multilingual checkpoints have 51865 tokens or more, English-only ones fewer.
const MULTILINGUAL_VOCAB: usize = 51_865;

/// One stretch of speech with its time in the clip.
#[derive(Debug, Clone, PartialEq)]
pub struct Segment {
    pub start: f32,
    pub end: f32,
    pub text: String,
}

/// What was said in one clip.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Transcript {
    pub text: String,
    /// Timed segments, when asked for.
    pub segments: Vec<Segment>,
}

/// How to decode.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Spoken language code (`en`, `de`...); `None` detects it per window (multilingual models).
    pub language: Option<String>,
    /// Produce timed segments.
    pub timestamps: bool,
}

/// The tokenizer's special tokens Whisper decoding steers by.
#[derive(Debug, Clone)]
struct SpecialTokens {
    sot: u32,
    eot: u32,
    transcribe: u32,
    no_timestamps: u32,
    timestamp_begin: u32,
    /// Language tokens (`<|en|>`...) of a multilingual model; empty for English-only ones.
    languages: Vec<u32>,
}

/// A loaded Whisper model and its tokenizer, shared by a step's tasks.
pub struct Transcriber {
    model: WhisperModel,
    mel: LogMel,
    tokenizer: Tokenizer,
    tokens: SpecialTokens,
    /// Never sampled: non-speech symbols and the special tokens other than end-of-text.
    suppress: Vec<u32>,
    /// Not sampled first: a bare space and end-of-text.
    suppress_at_start: Vec<u32>,
    language: Option<u32>,
    dtype: DType,
    device: Device,
}

impl Transcriber {
    /// Loads a Whisper model (Hugging Face tensor names, as `weir model convert` writes them)
    /// and its `tokenizer.json`. The sizes come from the tensors' shapes.
    ///
    /// # Errors
    /// [`ModelError`] naming the field: weights that are not Whisper's, a missing or foreign
    /// tokenizer, a language the model does not know, or an unavailable device.
    pub fn load(spec: &ModelSpec, assets: &ModelAssets, options: &Options) -> Result<Self, ModelError> {
        let device = device::select(spec.device)?;
        let dtype = device::dtype(spec.dtype, &device);
        let weights = Weights::parse(&assets.weights)?;
        let config = config_from_shapes(&weights)?;
        let uri = weights.uri().to_string();
        let vb = weights.into_var_builder(dtype, &device);
        let model =
            WhisperModel::load(&vb, config.clone()).map_err(|e| ModelError::Weights { uri, message: e.to_string() })?;
        let tokenizer_asset = assets.tokenizer.as_ref().ok_or_else(|| tokenizer_error("", "is missing".into()))?;
        let tokenizer = Tokenizer::from_bytes(&tokenizer_asset.bytes[..])
            .map_err(|e| tokenizer_error(&tokenizer_asset.uri, format!("is not a tokenizer.json: {e}")))?;
        let tokens = special_tokens(&tokenizer, config.vocab_size)
            .map_err(|message| tokenizer_error(&tokenizer_asset.uri, message))?;
        let language = language_token(&tokenizer, &tokens, options.language.as_deref())?;
        let suppress = suppressed_tokens(&tokenizer, &tokens);
        let suppress_at_start = tokenizer
            .encode(" ", false)
            .ok()
            .and_then(|e| e.get_ids().first().copied())
            .into_iter()
            .chain([tokens.eot])
            .collect();
        let mel = LogMel::new(config.num_mel_bins, &device)?;
        Ok(Self { model, mel, tokenizer, tokens, suppress, suppress_at_start, language, dtype, device })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Transcribes 16 kHz mono clips, `batch` windows of 30 s per forward pass. A clip longer
    /// than 30 s is cut into consecutive windows whose texts are joined.
    ///
    /// # Errors
    /// [`ModelError::Run`] when a tensor operation fails (the whole call fails: no clip is
    /// half transcribed).
    pub fn transcribe(&self, clips: &[&[f32]], options: &Options, batch: usize) -> Result<Vec<Transcript>, ModelError> {
        let windows: Vec<(usize, f32, &[f32])> = clips
            .iter()
            .enumerate()
            .flat_map(|(clip, samples)| {
                samples.chunks(WINDOW_SAMPLES).enumerate().map(move |(i, w)| (clip, i as f32 * 30.0, w))
            })
            .collect();
        let mut transcripts = vec![Transcript::default(); clips.len()];
        for group in windows.chunks(batch.max(1)) {
            let samples: Vec<&[f32]> = group.iter().map(|(_, _, w)| *w).collect();
            let decoded = self.decode_windows(&samples, options.timestamps)?;
            for ((clip, offset, _), tokens) in group.iter().zip(decoded) {
                let out = &mut transcripts[*clip];
                let text = self.text(&tokens);
                if !text.is_empty() {
                    if !out.text.is_empty() {
                        out.text.push(' ');
                    }
                    out.text.push_str(&text);
                }
                if options.timestamps {
                    out.segments.extend(self.segments(&tokens, *offset));
                }
            }
        }
        Ok(transcripts)
    }

    /// The sampled tokens (prompt and end-of-text excluded) of each window.
    fn decode_windows(&self, windows: &[&[f32]], timestamps: bool) -> Result<Vec<Vec<u32>>, ModelError> {
        let mel = self.mel.compute(windows)?.to_dtype(self.dtype)?;
        let features = self.model.encode(&mel)?;
        let languages = match (self.language, self.tokens.languages.is_empty()) {
            (_, true) => vec![None; windows.len()],
            (Some(language), false) => vec![Some(language); windows.len()],
            (None, false) => self.detect_languages(&features)?.into_iter().map(Some).collect(),
        };
        let prompts: Vec<Vec<u32>> = languages.into_iter().map(|l| self.prompt(l, timestamps)).collect();
        self.greedy(&features, prompts, timestamps)
    }

    fn prompt(&self, language: Option<u32>, timestamps: bool) -> Vec<u32> {
        let t = &self.tokens;
        let mut prompt = vec![t.sot];
        if let Some(language) = language {
            prompt.extend([language, t.transcribe]);
        }
        if !timestamps {
            prompt.push(t.no_timestamps);
        }
        prompt
    }

    /// The most likely language token of each window, from the logits after start-of-transcript.
    fn detect_languages(&self, features: &Tensor) -> Result<Vec<u32>, ModelError> {
        let batch = features.dim(0)?;
        let sot = Tensor::new(vec![self.tokens.sot; batch], &self.device)?.reshape((batch, 1))?;
        let logits = self.next_logits(&mut self.model.start(features)?, sot)?;
        Ok(logits
            .iter()
            .map(|row| {
                let best = self.tokens.languages.iter().max_by(|a, b| row[**a as usize].total_cmp(&row[**b as usize]));
                best.copied().unwrap_or(self.tokens.sot)
            })
            .collect())
    }

    /// Greedy decoding of a batch of prompts of one length; rows that reach end-of-text wait
    /// (fed end-of-text) for the rest. The decoder keeps what it has seen, so each step feeds
    /// the last token only.
    fn greedy(&self, features: &Tensor, prompts: Vec<Vec<u32>>, timestamps: bool) -> Result<Vec<Vec<u32>>, ModelError> {
        let batch = prompts.len();
        let start = prompts.first().map_or(0, Vec::len);
        let max_positions = self.model.config().max_target_positions;
        let limit = max_positions.saturating_sub(start).min(max_positions / 2);
        let mut decoding = self.model.start(features)?;
        let flat: Vec<u32> = prompts.iter().flatten().copied().collect();
        let mut input = Tensor::new(flat, &self.device)?.reshape((batch, start))?;
        let mut rows = prompts;
        let mut done = vec![false; batch];
        for _ in 0..limit {
            let logits = self.next_logits(&mut decoding, input)?;
            let mut picked = Vec::with_capacity(batch);
            for (b, mut row_logits) in logits.into_iter().enumerate() {
                let next =
                    if done[b] { self.tokens.eot } else { self.pick(&mut row_logits, &rows[b][start..], timestamps) };
                done[b] |= next == self.tokens.eot;
                rows[b].push(next);
                picked.push(next);
            }
            if done.iter().all(|d| *d) {
                break;
            }
            input = Tensor::new(picked, &self.device)?.reshape((batch, 1))?;
        }
        let eot = self.tokens.eot;
        Ok(rows.into_iter().map(|row| row[start..].iter().copied().take_while(|t| *t != eot).collect()).collect())
    }

    /// The f32 logits after the last of `tokens` `(batch, n)`, fed after what `decoding` has seen.
    fn next_logits(&self, decoding: &mut Decoding<'_>, tokens: Tensor) -> Result<Vec<Vec<f32>>, ModelError> {
        Ok(decoding.next_logits(&tokens)?.to_dtype(DType::F32)?.to_vec2::<f32>()?)
    }

    /// The next token: the best one the decoding rules allow.
    fn pick(&self, logits: &mut [f32], sampled: &[u32], timestamps: bool) -> u32 {
        let forbid = |logits: &mut [f32], ids: &[u32]| {
            for id in ids {
                if let Some(l) = logits.get_mut(*id as usize) {
                    *l = f32::NEG_INFINITY;
                }
            }
        };
        forbid(logits, &self.suppress);
        if sampled.is_empty() {
            forbid(logits, &self.suppress_at_start);
        }
        let first_timestamp = (self.tokens.timestamp_begin as usize).min(logits.len());
        if timestamps {
            self.timestamp_rules(logits, sampled);
        } else {
            logits[first_timestamp..].fill(f32::NEG_INFINITY);
        }
        let best = logits.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
        best.map_or(self.tokens.eot, |i| i as u32)
    }

    /// Whisper's timestamp grammar: segments open and close with a timestamp, timestamps never
    /// go back, the first token is a timestamp within 1 s, and a timestamp is taken whenever the
    /// timestamps together are likelier than any single text token.
    fn timestamp_rules(&self, logits: &mut [f32], sampled: &[u32]) {
        let begin = (self.tokens.timestamp_begin as usize).min(logits.len());
        let eot = self.tokens.eot as usize;
        let is_timestamp = |t: &u32| *t as usize >= begin;
        let last = sampled.last().is_some_and(is_timestamp);
        let penultimate = sampled.len() < 2 || is_timestamp(&sampled[sampled.len() - 2]);
        if last {
            if penultimate {
                logits[begin..].fill(f32::NEG_INFINITY);
            } else {
                logits[..eot].fill(f32::NEG_INFINITY);
            }
        }
        if let Some(previous) = sampled.iter().rev().find(|t| is_timestamp(t)) {
            let floor = if last && !penultimate { *previous as usize } else { *previous as usize + 1 };
            let end = floor.min(logits.len());
            logits[begin..end].fill(f32::NEG_INFINITY);
        }
        if sampled.is_empty() {
            logits[..begin].fill(f32::NEG_INFINITY);
            let len = logits.len();
            let latest = (begin + MAX_INITIAL_TIMESTAMP + 1).min(len);
            logits[latest..].fill(f32::NEG_INFINITY);
        }
        let best_text = logits[..begin].iter().copied().fold(f32::NEG_INFINITY, f32::max);
        if log_sum_exp(&logits[begin..]) > best_text {
            logits[..begin].fill(f32::NEG_INFINITY);
        }
    }

    /// The text of sampled tokens, timestamps left out.
    fn text(&self, tokens: &[u32]) -> String {
        let words: Vec<u32> = tokens.iter().copied().filter(|t| *t < self.tokens.eot).collect();
        self.tokenizer.decode(&words, true).map(|t| t.trim().to_string()).unwrap_or_default()
    }

    /// The timed segments of one window's tokens, `offset` seconds into the clip. Text after the
    /// last timestamp (the window ran out) ends at the window's end.
    fn segments(&self, tokens: &[u32], offset: f32) -> Vec<Segment> {
        let begin = self.tokens.timestamp_begin;
        let mut segments = Vec::new();
        let mut start: Option<f32> = None;
        let mut words = Vec::new();
        for token in tokens {
            if *token < begin {
                words.push(*token);
                continue;
            }
            let time = offset + (token - begin) as f32 * SECONDS_PER_TIMESTAMP;
            match start {
                None => start = Some(time),
                Some(from) => {
                    let text = self.text(&words);
                    if !text.is_empty() {
                        segments.push(Segment { start: from, end: time, text });
                    }
                    words.clear();
                    start = None;
                }
            }
        }
        let text = self.text(&words);
        if !text.is_empty() {
            segments.push(Segment { start: start.unwrap_or(offset), end: offset + 30.0, text });
        }
        segments
    }
}

fn log_sum_exp(values: &[f32]) -> f32 {
    let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if max == f32::NEG_INFINITY {
        return max;
    }
    max + values.iter().map(|v| (v - max).exp()).sum::<f32>().ln()
}

fn tokenizer_error(uri: &str, message: String) -> ModelError {
    ModelError::Asset { field: "model.tokenizer", uri: uri.to_string(), message }
}

/// The model's sizes, read from its tensors (candle's config file is not needed).
///
/// # Errors
/// [`ModelError::Weights`] naming a tensor every Whisper model has and these weights lack.
pub fn config_from_shapes(weights: &Weights) -> Result<Config, ModelError> {
    let missing = |name: &str, shape: &str| ModelError::Weights {
        uri: weights.uri().to_string(),
        message: format!(
            "tensor `{name}` (shape {shape}) is missing: not a Whisper model with Hugging Face names \
             (convert a CTranslate2 model.bin with `weir model convert`)"
        ),
    };
    let conv = weights
        .shape_of("model.encoder.conv1.weight")
        .ok_or_else(|| missing("model.encoder.conv1.weight", "[d_model, n_mels, 3]"))?;
    let embed = weights
        .shape_of("model.decoder.embed_tokens.weight")
        .ok_or_else(|| missing("model.decoder.embed_tokens.weight", "[vocab, d_model]"))?;
    let positions = weights
        .shape_of("model.decoder.embed_positions.weight")
        .ok_or_else(|| missing("model.decoder.embed_positions.weight", "[text_ctx, d_model]"))?;
    let (d_model, n_mels) = (conv[0], conv.get(1).copied().unwrap_or(0));
    let layers = |side: &str| (0..).take_while(|i| weights.has_prefix(&format!("model.{side}.layers.{i}."))).count();
    let heads = d_model / WHISPER_HEAD_DIM;
    Ok(Config {
        num_mel_bins: n_mels,
        max_source_positions: weights.shape_of("model.encoder.embed_positions.weight").map_or(1500, |s| s[0]),
        d_model,
        encoder_attention_heads: heads,
        encoder_layers: layers("encoder"),
        vocab_size: embed[0],
        max_target_positions: positions[0],
        decoder_attention_heads: heads,
        decoder_layers: layers("decoder"),
        suppress_tokens: Vec::new(),
    })
}

fn special_tokens(tokenizer: &Tokenizer, vocab: usize) -> Result<SpecialTokens, String> {
    let id = |token: &str| {
        tokenizer.token_to_id(token).ok_or_else(|| format!("has no `{token}` token: not a Whisper tokenizer"))
    };
    let no_timestamps = id("<|notimestamps|>")?;
    let sot = id("<|startoftranscript|>")?;
    let transcribe = id("<|transcribe|>")?;
    let languages = if vocab >= MULTILINGUAL_VOCAB {
        (sot + 1..transcribe).filter(|i| tokenizer.id_to_token(*i).is_some_and(|t| is_language_token(&t))).collect()
    } else {
        Vec::new()
    };
    let timestamp_begin = no_timestamps + 1;
    if timestamp_begin as usize >= vocab {
        return Err(format!(
            "does not fit the model: its timestamps start at {timestamp_begin}, the model has {vocab} tokens"
        ));
    }
    Ok(SpecialTokens { sot, eot: id("<|endoftext|>")?, transcribe, no_timestamps, timestamp_begin, languages })
}

/// `<|en|>`, `<|haw|>`...: two or three lowercase letters between the markers.
fn is_language_token(token: &str) -> bool {
    token
        .strip_prefix("<|")
        .and_then(|t| t.strip_suffix("|>"))
        .is_some_and(|code| (2..=3).contains(&code.len()) && code.chars().all(|c| c.is_ascii_lowercase()))
}

/// The language token to force, if any.
fn language_token(
    tokenizer: &Tokenizer,
    tokens: &SpecialTokens,
    language: Option<&str>,
) -> Result<Option<u32>, ModelError> {
    let Some(code) = language else { return Ok(None) };
    let refuse = |message: String| ModelError::Asset { field: "language", uri: code.to_string(), message };
    if tokens.languages.is_empty() {
        return match code {
            "en" => Ok(None),
            _ => Err(refuse("this model is English-only".into())),
        };
    }
    match tokenizer.token_to_id(&format!("<|{code}|>")) {
        Some(id) if tokens.languages.contains(&id) => Ok(Some(id)),
        _ => Err(refuse("is not a language this model knows (use a code such as en, de, fr, ja)".into())),
    }
}

/// The tokens Whisper's reference decoder never samples: the special tokens between
/// end-of-text and the timestamps, and the tokens of symbols that are not speech (brackets,
/// music notes...), found through the tokenizer as openai-whisper does.
fn suppressed_tokens(tokenizer: &Tokenizer, tokens: &SpecialTokens) -> Vec<u32> {
    let mut out: Vec<u32> = (tokens.eot + 1..tokens.timestamp_begin).collect();
    let first = |text: &str| tokenizer.encode(text, false).ok().map(|e| e.get_ids().to_vec()).unwrap_or_default();
    out.extend(first(" -").first());
    out.extend(first(" '").first());
    let symbols = "\" # ( ) * + / : ; < = > @ [ \\ ] ^ _ ` { | } ~ 「 」 『 』 << >> <<< >>> -- --- -( -[ (' (\" (( )) ((( ))) [[ ]] {{ }} ♪♪ ♪♪♪";
    let notes = ["♩", "♪", "♫", "♬", "♭", "♮", "♯"];
    for symbol in symbols.split(' ') {
        for ids in [first(symbol), first(&format!(" {symbol}"))] {
            if let [one] = ids.as_slice() {
                out.push(*one);
            }
        }
    }
    for note in notes {
        for ids in [first(note), first(&format!(" {note}"))] {
            out.extend(ids.first());
        }
    }
    out.sort_unstable();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_tokens_are_short_lowercase_codes() {
        assert!(is_language_token("<|en|>") && is_language_token("<|haw|>"));
        assert!(!is_language_token("<|translate|>") && !is_language_token("<|0.00|>") && !is_language_token("en"));
    }

    #[test]
    fn log_sum_exp_is_stable_and_handles_all_forbidden() {
        assert!((log_sum_exp(&[1000.0, 1000.0]) - (1000.0 + 2f32.ln())).abs() < 1e-3);
        assert_eq!(log_sum_exp(&[f32::NEG_INFINITY; 3]), f32::NEG_INFINITY);
    }
}
