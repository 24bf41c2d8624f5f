// Android only: load a model shipped as an uncompressed APK asset, without copying it out.
package dev.tern.android

import android.content.res.AssetManager
import android.os.ParcelFileDescriptor
import dev.tern.ModelOptions
import dev.tern.TernModel
import kotlinx.coroutines.Dispatchers
import kotlinx.coroutines.withContext

/** Asset access through the NDK's asset manager (see ffi/src/android.rs). */
object TernAssets {
    init {
        System.loadLibrary("tern_ffi")
    }

    /** `[fd, offset, length]` of asset [name]; the descriptor is the caller's to close. */
    @JvmStatic
    private external fun nativeOpenAsset(assets: AssetManager, name: String): LongArray

    /**
     * Maps asset [name] straight from the APK. The asset must be stored uncompressed: add
     * `androidResources { noCompress += "gguf" }` to the app's build.gradle.kts. Throws
     * [RuntimeException] when the asset is missing or compressed, and
     * [dev.tern.ffi.TernException] when it is not a model Tern can load.
     */
    suspend fun load(
        assets: AssetManager,
        name: String,
        options: ModelOptions = ModelOptions(),
        onProgress: ((fraction: Float) -> Unit)? = null,
    ): TernModel = withContext(Dispatchers.IO) {
        val (fd, offset, length) = nativeOpenAsset(assets, name)
        // The mapping outlives the descriptor: close it as soon as the model is loaded.
        ParcelFileDescriptor.adoptFd(fd.toInt()).use { pfd ->
            if (onProgress == null) {
                TernModel.load(pfd.fd, offset, length, options)
            } else {
                TernModel.load(pfd.fd, offset, length, options, onProgress)
            }
        }
    }
}

/**
 * Loads asset [name] of [assets] (see [TernAssets.load]), calling [onProgress] (if given) on
 * the loading thread with the fraction done.
 */
suspend fun TernModel.Companion.loadAsset(
    assets: AssetManager,
    name: String,
    options: ModelOptions = ModelOptions(),
    onProgress: ((fraction: Float) -> Unit)? = null,
): TernModel = TernAssets.load(assets, name, options, onProgress)
