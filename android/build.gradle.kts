// The Tern Android library: tern-ffi built for arm64-v8a, armeabi-v7a and x86_64 with
// cargo-ndk, the Kotlin bindings uniffi generates from it, and the wrapper in src/main/kotlin.
//
// Needs: rustup targets aarch64-linux-android armv7-linux-androideabi x86_64-linux-android,
// `cargo install cargo-ndk`, and the NDK (ANDROID_NDK_HOME, or the SDK's ndk/ folder).
plugins {
    id("com.android.library")
    id("org.jetbrains.kotlin.android")
}

val repoRoot: File = projectDir.parentFile
val rustJniLibs = layout.buildDirectory.dir("rustJniLibs")
val uniffiKotlin = layout.buildDirectory.dir("generated/uniffi")

android {
    namespace = "dev.tern"
    compileSdk = 35

    defaultConfig {
        minSdk = 24
        consumerProguardFiles("consumer-rules.pro")
    }

    sourceSets["main"].apply {
        jniLibs.srcDir(rustJniLibs)
        kotlin.srcDir(uniffiKotlin)
    }

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

kotlin {
    jvmToolchain(17)
}

dependencies {
    // The generated bindings call the library through JNA; the AAR carries its native part.
    // 5.17.0 or later: earlier libjnidispatch.so builds for x86_64 are aligned to 4 KB pages
    // only (scripts/check-16k.sh checks every 64-bit library the AAR carries).
    implementation("net.java.dev.jna:jna:5.17.0@aar")
    implementation("org.jetbrains.kotlinx:kotlinx-coroutines-android:1.10.2")
}

val rustSources = listOf("ffi", "runtime", "kernels", "delegate-qnn").map { repoRoot.resolve(it) } +
    listOf("Cargo.toml", "Cargo.lock").map { repoRoot.resolve(it) }

/**
 * `-Ptern.npu=true` (or `tern.npu=true` in gradle.properties) builds the NPU delegate in (cargo
 * feature `npu`; `ModelOptions.delegate`, docs/npu.md). The app then bundles ONNX Runtime with
 * QNN itself: `com.microsoft.onnxruntime:onnxruntime-android-qnn`.
 */
val ternNpu = providers.gradleProperty("tern.npu").map { it.toBoolean() }.getOrElse(false)

/** libtern_ffi.so for each ABI, into build/rustJniLibs/<abi>/. */
val cargoNdkBuild by tasks.registering(Exec::class) {
    group = "rust"
    description = "Builds tern-ffi for arm64-v8a, armeabi-v7a and x86_64 with cargo-ndk."
    inputs.files(rustSources)
    outputs.dir(rustJniLibs)
    workingDir = repoRoot
    // 16 KB pages (required by Google Play for Android 15+ targets) on the 64-bit ABIs.
    environment("CARGO_TARGET_AARCH64_LINUX_ANDROID_RUSTFLAGS", "-C link-arg=-Wl,-z,max-page-size=16384")
    environment("CARGO_TARGET_X86_64_LINUX_ANDROID_RUSTFLAGS", "-C link-arg=-Wl,-z,max-page-size=16384")
    commandLine(
        "cargo", "ndk",
        "-t", "arm64-v8a", "-t", "armeabi-v7a", "-t", "x86_64",
        "-o", rustJniLibs.get().asFile.path,
        "build", "--release", "-p", "tern-ffi", "--lib",
        *(if (ternNpu) arrayOf("--features", "npu") else emptyArray()),
    )
}

/** Kotlin bindings (package dev.tern.ffi), generated from the built arm64 library. */
val uniffiBindings by tasks.registering(Exec::class) {
    group = "rust"
    description = "Generates the Kotlin bindings with tern-ffi's uniffi-bindgen."
    dependsOn(cargoNdkBuild)
    inputs.dir(rustJniLibs)
    outputs.dir(uniffiKotlin)
    workingDir = repoRoot
    commandLine(
        "cargo", "run", "--release", "-p", "tern-ffi", "--features", "cli", "--bin", "uniffi-bindgen",
        "--", "generate",
        "--library", rustJniLibs.get().file("arm64-v8a/libtern_ffi.so").asFile.path,
        "--language", "kotlin",
        "--out-dir", uniffiKotlin.get().asFile.path,
        "--no-format",
    )
}

tasks.named("preBuild") { dependsOn(uniffiBindings) }
