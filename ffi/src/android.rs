//! Android only: an APK asset as a file descriptor region, for [`crate::Model::open_fd`].
//!
//! Kotlin's `dev.tern.android.TernAssets.openAsset(assets, name)` calls
//! `nativeOpenAsset`, which asks the NDK's asset manager for the asset's descriptor, offset
//! and length. Only assets stored uncompressed have one: build the APK with
//! `androidResources { noCompress += "gguf" }`.

use std::ffi::{c_char, c_int, c_void, CString};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};

use jni::errors::ThrowRuntimeExAndDefault;
use jni::objects::{JClass, JLongArray, JObject, JString};
use jni::{Env, EnvUnowned};

/// `AASSET_MODE_RANDOM` from `<android/asset_manager.h>`.
const AASSET_MODE_RANDOM: c_int = 1;

#[repr(C)]
struct AAssetManager {
    _opaque: [u8; 0],
}

#[repr(C)]
struct AAsset {
    _opaque: [u8; 0],
}

#[link(name = "android")]
extern "C" {
    fn AAssetManager_fromJava(env: *mut c_void, asset_manager: *mut c_void) -> *mut AAssetManager;
    fn AAssetManager_open(
        mgr: *mut AAssetManager,
        filename: *const c_char,
        mode: c_int,
    ) -> *mut AAsset;
    fn AAsset_openFileDescriptor64(
        asset: *mut AAsset,
        out_start: *mut i64,
        out_length: *mut i64,
    ) -> c_int;
    fn AAsset_close(asset: *mut AAsset);
}

/// Why an asset has no descriptor.
#[derive(Debug)]
enum AssetError {
    Jni(jni::errors::Error),
    Missing(String),
    Compressed(String),
}

impl From<jni::errors::Error> for AssetError {
    fn from(e: jni::errors::Error) -> Self {
        AssetError::Jni(e)
    }
}

impl std::fmt::Display for AssetError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AssetError::Jni(e) => write!(f, "{e}"),
            AssetError::Missing(name) => write!(f, "no asset '{name}'"),
            AssetError::Compressed(name) => write!(
                f,
                "asset '{name}' is compressed: add `noCompress += \"gguf\"` to the app's build"
            ),
        }
    }
}

impl std::error::Error for AssetError {}

/// `TernAssets.nativeOpenAsset(assetManager, name): LongArray` — `[fd, offset, length]`.
/// The descriptor is the caller's to close. Throws `RuntimeException` on failure.
#[no_mangle]
pub extern "system" fn Java_dev_tern_android_TernAssets_nativeOpenAsset<'local>(
    mut unowned: EnvUnowned<'local>,
    _class: JClass<'local>,
    asset_manager: JObject<'local>,
    name: JString<'local>,
) -> JLongArray<'local> {
    unowned
        .with_env(|env| open_asset(env, &asset_manager, &name))
        .resolve::<ThrowRuntimeExAndDefault>()
}

fn open_asset<'local>(
    env: &mut Env<'local>,
    asset_manager: &JObject<'local>,
    name: &JString<'local>,
) -> Result<JLongArray<'local>, AssetError> {
    let name = name.try_to_string(env)?;
    let c_name = CString::new(name.clone()).map_err(|_| AssetError::Missing(name.clone()))?;
    // SAFETY: `env` is this thread's live JNI environment and `asset_manager` a local reference
    // to an `android.content.res.AssetManager` (the Kotlin signature only accepts one), valid
    // for this native call; the NDK returns a pointer valid while that Java object lives.
    let mgr =
        unsafe { AAssetManager_fromJava(env.get_raw().cast(), asset_manager.as_raw().cast()) };
    if mgr.is_null() {
        return Err(AssetError::Missing(name));
    }
    // SAFETY: `mgr` is non-null and valid for this call (above); `c_name` is NUL-terminated.
    let asset = unsafe { AAssetManager_open(mgr, c_name.as_ptr(), AASSET_MODE_RANDOM) };
    if asset.is_null() {
        return Err(AssetError::Missing(name));
    }
    let (mut start, mut length) = (0i64, 0i64);
    // SAFETY: `asset` is a live asset opened above; the out-pointers point at two locals.
    let fd = unsafe { AAsset_openFileDescriptor64(asset, &mut start, &mut length) };
    // SAFETY: `asset` was opened above and is not used after this; the descriptor from
    // `AAsset_openFileDescriptor64` is independent of it.
    unsafe { AAsset_close(asset) };
    if fd < 0 {
        return Err(AssetError::Compressed(name));
    }
    // SAFETY: `fd` was just opened for us by the NDK and nothing else owns it; owning it here
    // closes it if building the result fails, and `into_raw_fd` hands it to the caller.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let out = env.new_long_array(3)?;
    out.set_region(env, 0, &[i64::from(fd.as_raw_fd()), start, length])?;
    let _caller_owns = fd.into_raw_fd();
    Ok(out)
}
