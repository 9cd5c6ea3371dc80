//! FFmpeg's shared libraries opened on first use (`dlopen`), not when the process starts.
//!
//! Debian's FFmpeg libraries pull in about 130 others (every codec library, GnuTLS, cairo, glib,
//! Highway, whose constructor times the clock for ~20 ms), and loading them cost every `weir`
//! process ~25 ms of start-up and ~20 MiB of mapped pages, though most jobs read no video or audio.
//!
//! This crate defines each FFmpeg function Weir calls, under the function's own name, as one that
//! calls the real function through a pointer that [`load`] found in the library. `ffmpeg-next`'s
//! calls link to these definitions, so the linker (`--as-needed`, rustc's default) records no
//! dependency on FFmpeg's libraries, and nothing of FFmpeg is loaded until a media step calls
//! [`load`] when it is built.
//!
//! # Adding a function
//! A call to an FFmpeg function missing from the list below still works, but the linker then
//! takes that function from its library, which makes the process load FFmpeg at start again; the
//! test `ffmpeg_is_loaded_by_a_job_that_reads_video_and_not_at_start` (in `weir`'s
//! `tests/video.rs`) fails. Each entry's signature is checked at compile time against
//! `ffmpeg-sys-next`'s declaration. The list is that of FFmpeg 5.1 (Debian bookworm, what CI
//! builds against); the functions FFmpeg 7 removed are left out when building against it, and
//! the ones `ffmpeg-next` calls instead there are taken from the libraries at start.
//!
//! # Guarantees
//! [`load`] opens the libraries of the FFmpeg major versions Weir was built against
//! (`libavcodec.so.59` for FFmpeg 5.1), once per process; the libraries stay loaded until exit. A
//! function called before a successful [`load`] loads the libraries itself, and if that fails the
//! process aborts with the reason: every caller in Weir calls [`load`] first and reports its error.

use std::sync::OnceLock;

use ffmpeg_next::ffi;
use ffmpeg_next::ffi::{
    AVCodec, AVCodecContext, AVCodecID, AVCodecParameters, AVDictionary, AVFormatContext, AVFrame, AVIOContext,
    AVInputFormat, AVMediaType, AVPacket, AVPixelFormat, AVSampleFormat, SwrContext, SwsContext, SwsFilter,
};
use libloading::Library;
use std::ffi::{c_char, c_int, c_void};

/// Why FFmpeg could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "cannot load FFmpeg's {library}, which video and audio steps need: {source} (on Debian: apt-get install libavformat59 libswscale6 libswresample4)"
    )]
    Library { library: String, source: libloading::Error },
    #[error("FFmpeg's {library} has no function {function}: {source}")]
    Function { library: String, function: &'static str, source: libloading::Error },
}

static FUNCTIONS: OnceLock<Result<Functions, LoadError>> = OnceLock::new();

/// Loads FFmpeg's libraries, once per process; later calls return the first call's outcome.
///
/// # Errors
/// [`LoadError`] when a library or one of its functions cannot be found.
pub fn load() -> Result<(), &'static LoadError> {
    FUNCTIONS.get_or_init(Functions::load).as_ref().map(|_| ())
}

/// The loaded functions; aborts the process when FFmpeg cannot be loaded (see the crate docs).
fn functions() -> &'static Functions {
    match FUNCTIONS.get_or_init(Functions::load) {
        Ok(functions) => functions,
        Err(e) => {
            eprintln!("weir: an FFmpeg function was called, but FFmpeg cannot be loaded: {e}");
            std::process::abort()
        }
    }
}

/// `lib<name>.so.<major>`, the library of the FFmpeg Weir was built against.
fn open(name: &str, major: c_int) -> Result<Library, LoadError> {
    let library = format!("lib{name}.so.{major}");
    // SAFETY: FFmpeg's libraries run no initialisers that could conflict with this process's
    // state; their constructors (and their dependencies') are what loading them at start ran too.
    unsafe { Library::new(&library) }.map_err(|source| LoadError::Library { library, source })
}

/// The address of `function` in `library`, as a function pointer of type `F`.
///
/// # Safety
/// `F` must be the function's C signature.
unsafe fn function<F: Copy>(library: &Library, name: &str, function: &'static str) -> Result<F, LoadError> {
    // SAFETY: the caller guarantees `F`; the symbol name is NUL-free ASCII.
    let symbol = unsafe { library.get::<F>(function.as_bytes()) };
    symbol.map(|symbol| *symbol).map_err(|source| LoadError::Function { library: name.to_string(), function, source })
}

/// Defines [`Functions`], its loading, and one exported function per entry that calls through it.
/// An entry's attributes (a `cfg` on the FFmpeg version) apply to all of these.
macro_rules! ffmpeg_functions {
    ($(
        $library:ident ($major:path) {
            $( $(#[$attr:meta])* fn $name:ident ( $( $arg:ident : $ty:ty ),* ) $( -> $ret:ty )?; )*
        }
    )*) => {
        /// Pointers to the FFmpeg functions Weir calls, and the libraries that hold them.
        #[allow(non_snake_case)] // FFmpeg's names.
        struct Functions {
            $( $( $(#[$attr])* $name: unsafe extern "C" fn( $( $ty ),* ) $( -> $ret )?, )* )*
            _libraries: Vec<Library>,
        }

        impl Functions {
            #[allow(non_snake_case)]
            fn load() -> Result<Self, LoadError> {
                let mut libraries = Vec::new();
                $(
                    let library = open(stringify!($library), $major)?;
                    $(
                        $(#[$attr])*
                        // SAFETY: the type is the one checked against ffmpeg-sys-next's declaration below.
                        let $name = unsafe { function(&library, stringify!($library), stringify!($name))? };
                    )*
                    libraries.push(library);
                )*
                Ok(Self { $( $( $(#[$attr])* $name, )* )* _libraries: libraries })
            }
        }

        $( $(
            $(#[$attr])*
            const _: unsafe extern "C" fn( $( $ty ),* ) $( -> $ret )? = ffi::$name;

            /// FFmpeg's function of this name, called through the loaded library.
            ///
            /// # Safety
            /// FFmpeg's own contract for the function.
            $(#[$attr])*
            #[unsafe(no_mangle)]
            pub unsafe extern "C" fn $name( $( $arg: $ty ),* ) $( -> $ret )? {
                // SAFETY: the pointer is FFmpeg's function of this signature; the caller keeps its contract.
                unsafe { (functions().$name)( $( $arg ),* ) }
            }
        )* )*
    };
}

ffmpeg_functions! {
    avutil(ffi::LIBAVUTIL_VERSION_MAJOR) {
        fn av_dict_free(m: *mut *mut AVDictionary);
        fn av_dict_set(pm: *mut *mut AVDictionary, key: *const c_char, value: *const c_char, flags: c_int) -> c_int;
        fn av_frame_alloc() -> *mut AVFrame;
        fn av_frame_free(frame: *mut *mut AVFrame);
        fn av_frame_get_buffer(frame: *mut AVFrame, align: c_int) -> c_int;
        fn av_freep(ptr: *mut c_void);
        #[cfg(not(feature = "ffmpeg_7_0"))] // Removed in FFmpeg 7 with the old channel layouts.
        fn av_get_channel_layout_nb_channels(channel_layout: u64) -> c_int;
        #[cfg(not(feature = "ffmpeg_7_0"))] // Removed in FFmpeg 7 with the old channel layouts.
        fn av_get_default_channel_layout(nb_channels: c_int) -> i64;
        fn av_log_set_level(level: c_int);
        fn av_opt_set_dict(obj: *mut c_void, options: *mut *mut AVDictionary) -> c_int;
        fn av_sample_fmt_is_planar(sample_fmt: AVSampleFormat) -> c_int;
        fn av_strerror(errnum: c_int, errbuf: *mut c_char, errbuf_size: usize) -> c_int;
    }
    swresample(ffi::LIBSWRESAMPLE_VERSION_MAJOR) {
        #[cfg(not(feature = "ffmpeg_7_0"))] // Removed in FFmpeg 7 with the old channel layouts.
        fn swr_alloc_set_opts(
            s: *mut SwrContext,
            out_ch_layout: i64,
            out_sample_fmt: AVSampleFormat,
            out_sample_rate: c_int,
            in_ch_layout: i64,
            in_sample_fmt: AVSampleFormat,
            in_sample_rate: c_int,
            log_offset: c_int,
            log_ctx: *mut c_void
        ) -> *mut SwrContext;
        fn swr_convert_frame(swr: *mut SwrContext, output: *mut AVFrame, input: *const AVFrame) -> c_int;
        fn swr_free(s: *mut *mut SwrContext);
        fn swr_get_delay(s: *mut SwrContext, base: i64) -> i64;
        fn swr_init(s: *mut SwrContext) -> c_int;
    }
    swscale(ffi::LIBSWSCALE_VERSION_MAJOR) {
        fn sws_freeContext(context: *mut SwsContext);
        fn sws_getCoefficients(colorspace: c_int) -> *const c_int;
        fn sws_getContext(
            src_w: c_int,
            src_h: c_int,
            src_format: AVPixelFormat,
            dst_w: c_int,
            dst_h: c_int,
            dst_format: AVPixelFormat,
            flags: c_int,
            src_filter: *mut SwsFilter,
            dst_filter: *mut SwsFilter,
            param: *const f64
        ) -> *mut SwsContext;
        fn sws_scale(
            c: *mut SwsContext,
            src_slice: *const *const u8,
            src_stride: *const c_int,
            src_slice_y: c_int,
            src_slice_h: c_int,
            dst: *const *mut u8,
            dst_stride: *const c_int
        ) -> c_int;
        fn sws_setColorspaceDetails(
            c: *mut SwsContext,
            inv_table: *const c_int,
            src_range: c_int,
            table: *const c_int,
            dst_range: c_int,
            brightness: c_int,
            contrast: c_int,
            saturation: c_int
        ) -> c_int;
    }
    avcodec(ffi::LIBAVCODEC_VERSION_MAJOR) {
        fn av_codec_is_decoder(codec: *const AVCodec) -> c_int;
        fn av_init_packet(pkt: *mut AVPacket);
        fn av_packet_unref(pkt: *mut AVPacket);
        fn avcodec_alloc_context3(codec: *const AVCodec) -> *mut AVCodecContext;
        fn avcodec_close(avctx: *mut AVCodecContext) -> c_int;
        fn avcodec_find_decoder(id: AVCodecID) -> *const AVCodec;
        fn avcodec_free_context(avctx: *mut *mut AVCodecContext);
        fn avcodec_get_name(id: AVCodecID) -> *const c_char;
        fn avcodec_open2(avctx: *mut AVCodecContext, codec: *const AVCodec, options: *mut *mut AVDictionary) -> c_int;
        fn avcodec_parameters_free(par: *mut *mut AVCodecParameters);
        fn avcodec_parameters_to_context(codec: *mut AVCodecContext, par: *const AVCodecParameters) -> c_int;
        fn avcodec_receive_frame(avctx: *mut AVCodecContext, frame: *mut AVFrame) -> c_int;
        fn avcodec_send_packet(avctx: *mut AVCodecContext, avpkt: *const AVPacket) -> c_int;
    }
    avformat(ffi::LIBAVFORMAT_VERSION_MAJOR) {
        fn av_find_best_stream(
            ic: *mut AVFormatContext,
            type_: AVMediaType,
            wanted_stream_nb: c_int,
            related_stream: c_int,
            decoder_ret: *mut *const AVCodec,
            flags: c_int
        ) -> c_int;
        fn av_read_frame(s: *mut AVFormatContext, pkt: *mut AVPacket) -> c_int;
        fn avformat_close_input(s: *mut *mut AVFormatContext);
        fn avformat_find_stream_info(ic: *mut AVFormatContext, options: *mut *mut AVDictionary) -> c_int;
        fn avformat_free_context(s: *mut AVFormatContext);
        fn avformat_open_input(
            ps: *mut *mut AVFormatContext,
            url: *const c_char,
            fmt: *const AVInputFormat,
            options: *mut *mut AVDictionary
        ) -> c_int;
        fn avformat_seek_file(
            s: *mut AVFormatContext,
            stream_index: c_int,
            min_ts: i64,
            ts: i64,
            max_ts: i64,
            flags: c_int
        ) -> c_int;
        fn avio_close(s: *mut AVIOContext) -> c_int;
        fn avio_context_free(s: *mut *mut AVIOContext);
        fn avio_flush(s: *mut AVIOContext);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_libraries_load_and_a_function_answers_through_them() {
        load().expect("FFmpeg's libraries are installed where the tests run");
        let name = unsafe { std::ffi::CStr::from_ptr(avcodec_get_name(AVCodecID::AV_CODEC_ID_H264)) };
        assert_eq!(name.to_str(), Ok("h264"));
        let maps = std::fs::read_to_string("/proc/self/maps").expect("this process's mappings");
        assert!(maps.contains(&format!("libavformat.so.{}", ffi::LIBAVFORMAT_VERSION_MAJOR)), "{maps}");
    }

    #[test]
    fn a_library_that_is_not_there_is_named_in_the_error() {
        let Err(e) = open("avcodec-not-there", 59) else { panic!("a library that does not exist loaded") };
        assert!(e.to_string().contains("libavcodec-not-there.so.59"), "{e}");
        assert!(e.to_string().contains("apt-get install"), "{e}");
    }
}
