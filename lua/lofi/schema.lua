-- Generated from lofi_engine/shared (settings, request, events) by `make schema`; do not edit.
return {
  ["backends"] = { "musicgen", "ace-step" },
  ["default_duration_sec"] = 30.0,
  ["durations"] = {
    ["ace-step"] = { 10.0, 240.0 },
    ["musicgen"] = { 5.0, 120.0 },
  },
  ["events"] = {
    ["consent_required"] = {
      ["doc"] = "a job needs a model download the user has not agreed to",
      ["optional"] = { "track_id" },
      ["required"] = { "variant", "size_bytes", "files", "license" },
    },
    ["download_complete"] = {
      ["doc"] = "the model is downloaded",
      ["optional"] = {},
      ["required"] = { "variant", "path" },
    },
    ["download_error"] = {
      ["doc"] = "the model download failed",
      ["optional"] = {},
      ["required"] = { "variant", "code", "message" },
    },
    ["download_progress"] = {
      ["doc"] = "bytes of the model download so far",
      ["optional"] = { "track_id" },
      ["required"] = { "variant", "file", "bytes_downloaded", "bytes_total", "percent" },
    },
    ["generation_chunk"] = {
      ["doc"] = "playable audio before the track is done",
      ["optional"] = {},
      ["required"] = { "track_id", "path", "start_sec", "duration_sec" },
    },
    ["generation_complete"] = {
      ["doc"] = "the track is written and cached",
      ["optional"] = { "cached", "created_at", "last_played_at", "size_bytes" },
      ["required"] = { "track_id", "path", "duration_sec", "sample_rate", "prompt", "seed", "generation_time_sec", "model_version", "backend", "channels" },
    },
    ["generation_error"] = {
      ["doc"] = "the job failed or was cancelled",
      ["optional"] = {},
      ["required"] = { "track_id", "code", "message" },
    },
    ["generation_progress"] = {
      ["doc"] = "every 5 % of a job; stage names ACE-Step's unit kind (dit, decode)",
      ["optional"] = { "stage" },
      ["required"] = { "track_id", "percent", "tokens_generated", "tokens_estimated", "eta_sec" },
    },
    ["generation_start"] = {
      ["doc"] = "the engine began a job",
      ["optional"] = {},
      ["required"] = { "track_id", "prompt", "duration_sec", "seed", "backend" },
    },
    ["model_load_progress"] = {
      ["doc"] = "model files checked (stage verify) or opened",
      ["optional"] = { "stage" },
      ["required"] = { "track_id", "file", "bytes_loaded", "bytes_total", "percent" },
    },
    ["playback_end"] = {
      ["doc"] = "a track stopped playing: reason finished, skipped, stopped or error (then code and message)",
      ["optional"] = { "code", "message" },
      ["required"] = { "track_id", "reason" },
    },
    ["playback_pause"] = {
      ["doc"] = "playback paused",
      ["optional"] = {},
      ["required"] = { "track_id" },
    },
    ["playback_resume"] = {
      ["doc"] = "playback resumed",
      ["optional"] = {},
      ["required"] = { "track_id" },
    },
    ["playback_start"] = {
      ["doc"] = "a track (or a radio segment) began to play (its crossfade in)",
      ["optional"] = { "prompt", "duration_sec", "backend", "radio" },
      ["required"] = { "track_id" },
    },
    ["radio_error"] = {
      ["doc"] = "a radio window failed (CANCELLED once the radio is stopped)",
      ["optional"] = {},
      ["required"] = { "stream_id", "code", "message" },
    },
    ["radio_segment"] = {
      ["doc"] = "the radio's endless stream has its next stretch of audio, continuing the last one exactly",
      ["optional"] = {},
      ["required"] = { "stream_id", "path", "start_sec", "duration_sec", "prompt", "generation_time_sec" },
    },
    ["radio_state"] = {
      ["doc"] = "the radio started, stopped, was steered, or changed mode: live (generation keeps up) or rotation",
      ["optional"] = { "strategy", "prompt", "stream_id", "realtime_factor", "pieces" },
      ["required"] = { "active", "mode" },
    },
  },
  ["generate_params"] = { "prompt", "duration_sec", "seed", "priority", "backend", "top_k", "temperature", "guidance_scale", "steps" },
  ["max_pending"] = 10,
  ["max_seed"] = 4294967295,
  ["priorities"] = { "normal", "high" },
  ["settings"] = {
    ["ace_step_model_dir"] = {
      ["help"] = "an ACE-Step export (its manifest.json and ONNX files; default: cache_dir/models/ace-step)",
    },
    ["ace_step_variant"] = {
      ["choices"] = { "fp32", "int8" },
      ["default"] = "fp32",
      ["help"] = "ACE-Step weights: fp32, or int8 (weight-only for the encoders and the DiT: 4.1 GB of weights instead of 11.5 GB)",
    },
    ["backend"] = {
      ["choices"] = { "musicgen", "ace-step" },
      ["default"] = "musicgen",
      ["help"] = "the backend a request uses when it names none: musicgen (5–120 s) or ace-step (10–240 s, 48 kHz stereo)",
    },
    ["cache_dir"] = {
      ["help"] = "where tracks are kept",
    },
    ["cache_max_bytes"] = {
      ["default"] = 2147483648,
      ["help"] = "cache size limit in bytes (least recently played go first)",
    },
    ["crossfade_sec"] = {
      ["default"] = 2.0,
      ["help"] = "seconds consecutive tracks overlap (0: none; shortened for very short tracks)",
    },
    ["decoder"] = {
      ["choices"] = { "auto", "merged", "split" },
      ["default"] = "auto",
      ["help"] = "decoder form: merged file, split pair, or auto (merged when present)",
    },
    ["device"] = {
      ["choices"] = { "auto", "cpu", "cuda", "metal" },
      ["default"] = "auto",
      ["help"] = "auto, cpu, cuda or metal",
    },
    ["model_dir"] = {
      ["help"] = "a directory of model files laid out like the Hub's; skips the download",
    },
    ["optimized_cache"] = {
      ["default"] = true,
      ["help"] = "keep ONNX Runtime's optimized model in cache_dir/optimized: loads ≈ 2× faster, ≈ 3.5 GB of disk for small (true/false)",
    },
    ["player_command"] = {
      ["default"] = "mpv --no-config --really-quiet --no-video --no-terminal",
      ["help"] = "the audio player and its options (split like a shell would, never run by one); it is fed the mixed stream on its standard input",
    },
    ["playlist_loop"] = {
      ["default"] = true,
      ["help"] = "start the playlist over at its end; one track loops, its tail crossfaded into its head (true/false)",
    },
    ["radio_context_sec"] = {
      ["default"] = 5.0,
      ["help"] = "radio (continue): seconds of the piece so far each window continues",
    },
    ["radio_piece_sec"] = {
      ["default"] = 30.0,
      ["help"] = "radio (same_prompt, preset_cycle, random_preset): seconds a piece lasts",
    },
    ["radio_window_sec"] = {
      ["default"] = 15.0,
      ["help"] = "radio (continue): seconds of music a window composes, its context included (measured: with 5 s of context, 15 s windows cost the least compute per second of music and answer a steer sooner; see README, Performance)",
    },
    ["stall_timeout_sec"] = {
      ["default"] = 60.0,
      ["help"] = "seconds a busy engine may go without a sign of life (it sends one a second) before it is restarted and the job in flight fails",
    },
    ["threads"] = {
      ["help"] = "CPU threads for inference (default: all cores)",
    },
    ["variant"] = {
      ["choices"] = { "small", "small-int8", "small-fp16", "small-int4" },
      ["help"] = "model variant: small (fp32, the default), small-int8 (smaller, ≈ 2× faster on a CPU), small-fp16 (the default with --device cuda or metal) or small-int4 (4-bit weights made locally from small's files; CPU)",
    },
    ["volume"] = {
      ["default"] = 100,
      ["help"] = "playback volume, 0 to 100",
    },
  },
}
