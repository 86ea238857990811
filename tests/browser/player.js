// The test player: plays ?src=<manifest URL> with hls.js (?mode=hlsjs) or with the browser's own
// HLS support (?mode=native) and records what happened in window.player for the test to read.
"use strict";
(function () {
  var params = new URLSearchParams(location.search);
  var mode = params.get("mode") || "hlsjs";
  var src = params.get("src");
  var video = document.getElementById("video");
  var state = (window.player = { mode: mode, events: [], ended: false, error: null, canPlayType: "" });

  function note(text) {
    state.events.push(text);
    document.getElementById("log").textContent += text + "\n";
  }

  document.getElementById("mode").textContent = mode === "hlsjs" ? "hls.js " + Hls.version : "native <video>";
  state.canPlayType = video.canPlayType("application/vnd.apple.mpegurl");
  ["loadedmetadata", "playing", "ended"].forEach(function (name) {
    video.addEventListener(name, function () {
      note(name + " at " + video.currentTime.toFixed(2) + "s of " + video.duration.toFixed(2) + "s");
      if (name === "ended") state.ended = true;
    });
  });
  video.addEventListener("error", function () {
    var e = video.error;
    state.error = "MediaError " + (e && e.code) + ": " + ((e && e.message) || "(no message)");
    note(state.error);
  });

  if (mode === "hlsjs") {
    if (!Hls.isSupported()) {
      state.error = "hls.js: Media Source Extensions are not supported";
      note(state.error);
      return;
    }
    var hls = new Hls();
    hls.on(Hls.Events.ERROR, function (event, data) {
      note("hls.js " + (data.fatal ? "fatal " : "") + "error: " + data.type + " " + data.details);
      if (data.fatal) state.error = "hls.js: " + data.type + " " + data.details;
    });
    hls.on(Hls.Events.MANIFEST_PARSED, function (event, data) {
      note("manifest: " + data.levels.length + " level(s)");
      video.play().catch(function (err) { state.error = "play(): " + err; note(state.error); });
    });
    hls.loadSource(src);
    hls.attachMedia(video);
  } else {
    video.src = src;
    video.play().catch(function (err) { note("play(): " + err); });
  }
})();
