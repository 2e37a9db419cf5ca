// The clinician console: speaks clinic/protocol.py over wss://<hub>/console (see
// docs/calls.md); media goes straight to the booth (or through the hub's TURN
// server), never through the hub. Plain JS, no build step, no external resources.
// Everything shown comes from the hub as text: set with textContent, never parsed as HTML.
"use strict";

(() => {
  const el = (testid) => document.querySelector(`[data-testid="${testid}"]`);

  const ENDED = {
    resident_ended: "The resident ended the call.",
    clinician_ended: "You ended the call.",
    booth_disconnected: "The booth's connection did not come back in time, so the call ended.",
    clinician_disconnected: "This console lost its connection to the hub, so the call ended.",
    media_failed: "Audio and video could not get through, so the call ended.",
    queue_closed: "The waiting room closed, so the call ended.",
    hub_closing: "The hub is shutting down, so the call ended.",
  };
  const BOOTH_STATE = {
    idle: "Online, idle",
    in_use: "In use",
    out_of_service: "Out of service",
    emergency: "EMERGENCY",
  };
  const REFUSED = {
    not_waiting:
      "That booth is no longer waiting: another clinician answered it, or the resident left.",
    busy: "You are already in a call: end it before answering another booth.",
    unknown_call: "The hub no longer knows this call.",
    unknown_alert: "That alert was already acknowledged.",
  };
  // Alert kinds that are maintenance notices: listed apart, no alarm. Any other kind, even one
  // this page does not know, is an emergency.
  const MAINTENANCE = {
    updates_blocked:
      "Updates for this booth have failed for days: a technician should check its network and clock.",
  };
  // At most this long gathering before answering, whatever is still pending (a TURN server one
  // interface cannot reach never finishes). Well under the booth's re-offer (4 s) and stall (5 s)
  // timers, both counted from its offer: an answer later than those meets a newer offer and
  // cannot apply, so a console slower than that never connects.
  const ANSWER_GATHER_MS = 2000;
  const BEEP_EVERY_MS = 1200;

  const state = {
    phase: "connecting", // connecting | lobby | answering | in_call | disconnected
    ws: null,
    retries: 0,
    snapshot: { booths: [], queue: [] },
    alerts: new Map(), // alert_id -> the alert message
    acking: new Set(),
    pending: new Map(), // id of a request we sent -> what it was
    call: null, // { call_id, booth_id, audio_only, iceServers }
    pc: null,
    channel: null,
    local: null, // our MediaStream, or null
    localReady: Promise.resolve(null),
    media: "none", // "camera and microphone" | "microphone only" | "none"
    offers: Promise.resolve(),
    muted: false,
    cameraOff: false,
    door: "closed",
    emergency: false,
    residentMuted: false,
    residentCameraOff: false,
    boothOffline: false,
    lastCallEvent: null,
    lastEnded: null,
    lastError: null,
    rebuilds: 0,
    answersSent: 0,
    received: [],
  };

  // ------------------------------------------------------------ the hub link

  function newId() {
    const bytes = new Uint8Array(12);
    crypto.getRandomValues(bytes);
    return btoa(String.fromCharCode(...bytes))
      .replace(/\+/g, "-")
      .replace(/\//g, "_")
      .replace(/=+$/, "");
  }

  function send(type, fields = {}) {
    const message = { v: 1, type, id: newId(), ...fields };
    if (!state.ws || state.ws.readyState !== WebSocket.OPEN) return null;
    state.ws.send(JSON.stringify(message));
    return message.id;
  }

  function connect() {
    const ws = new WebSocket(`wss://${location.host}/console`);
    state.ws = ws;
    ws.addEventListener("open", () => {
      state.retries = 0;
      if (state.phase === "connecting" || state.phase === "disconnected") state.phase = "lobby";
      setText("connection", "Connected to the hub.");
      render();
    });
    ws.addEventListener("message", (event) => {
      let message;
      try {
        message = JSON.parse(event.data);
      } catch {
        return;
      }
      if (message && typeof message.type === "string") handle(message);
    });
    ws.addEventListener("close", () => {
      if (state.ws !== ws) return;
      state.ws = null;
      if (state.call) endCall("clinician_disconnected");
      state.phase = "disconnected";
      setText("connection", "Not connected to the hub: trying again…");
      render();
      reconnectLater();
    });
  }

  async function reconnectLater() {
    // A refused connection looks like any other drop: ask whether we are still signed in.
    try {
      const reply = await fetch("/", { redirect: "manual", cache: "no-store" });
      if (reply.type === "opaqueredirect") {
        location.assign("/login");
        return;
      }
    } catch {
      // the hub is unreachable: keep trying
    }
    const delay = Math.min(30000, 1000 * 2 ** state.retries);
    state.retries += 1;
    setTimeout(connect, delay);
  }

  function handle(message) {
    state.received.push(message.type);
    if (state.received.length > 200) state.received.shift();
    switch (message.type) {
      case "snapshot":
        state.snapshot = message;
        render();
        break;
      case "alert":
        if (!isEmergency(message) && !state.alerts.has(message.alert_id)) chime();
        state.alerts.set(message.alert_id, message);
        renderAlerts();
        break;
      case "alert_ack":
        if (message.status === "acknowledged") {
          state.alerts.delete(message.alert_id);
          state.acking.delete(message.alert_id);
          renderAlerts();
        }
        break;
      case "call_started":
        callStarted(message);
        break;
      case "offer":
        if (state.call && message.call_id === state.call.call_id) {
          state.offers = state.offers.then(() => answerOffer(message)).catch(offerFailed);
        }
        break;
      case "call_state":
        callEvent(message.call_id, message.event, "hub");
        break;
      case "call_ended":
        if (state.call && (!message.call_id || message.call_id === state.call.call_id)) {
          endCall(message.reason);
        }
        break;
      case "ping":
        send("pong", { in_reply_to: message.id });
        break;
      case "error":
        refused(message);
        break;
      default:
        break;
    }
  }

  function refused(message) {
    state.lastError = { code: message.code, message: message.message };
    const what = state.pending.get(message.in_reply_to);
    state.pending.delete(message.in_reply_to);
    if (what === "answer_booth" && state.phase === "answering") state.phase = "lobby";
    if (what === "ack_alert") {
      // Already acknowledged elsewhere: the hub's broadcast has (or will have) removed it.
      state.acking.clear();
      renderAlerts();
    }
    notice(REFUSED[message.code] || `The hub refused a request (${message.code}).`);
    render();
  }

  // ------------------------------------------------------------------ calls

  function iceServersOf(list) {
    // Exactly what the hub gave for this call: never a default public STUN server.
    return (list || []).map((server) => {
      const out = { urls: server.urls };
      if (server.username) out.username = server.username;
      if (server.credential) out.credential = server.credential;
      return out;
    });
  }

  function answerBooth(boothId) {
    if (state.phase !== "lobby") return;
    const id = send("answer_booth", { booth_id: boothId });
    if (!id) return;
    state.pending.set(id, "answer_booth");
    state.phase = "answering";
    notice("Answering…");
    render();
  }

  function callStarted(message) {
    if (state.call && state.call.call_id !== message.call_id) return;
    const booth = boothById(message.booth_id);
    state.call = {
      call_id: message.call_id,
      booth_id: message.booth_id,
      audio_only: message.audio_only,
      iceServers: iceServersOf(message.ice_servers),
    };
    state.phase = "in_call";
    state.door = booth ? booth.door : "closed";
    state.emergency = booth ? booth.state === "emergency" : false;
    state.residentMuted = false;
    state.residentCameraOff = false;
    state.boothOffline = false;
    state.lastEnded = null;
    notice("");
    callStatus("Connecting to the booth…");
    state.localReady = startLocalMedia();
    state.pc = makePeerConnection();
    render();
  }

  function makePeerConnection() {
    const pc = new RTCPeerConnection({ iceServers: state.call.iceServers });
    pc.addEventListener("track", (event) => {
      const video = el("remote-video");
      const stream = event.streams[0] || video.srcObject || new MediaStream();
      if (!event.streams[0]) stream.addTrack(event.track);
      if (video.srcObject !== stream) video.srcObject = stream;
      video.play().catch(() => {});
    });
    pc.addEventListener("datachannel", (event) => {
      if (event.channel.label === "state") useChannel(event.channel);
    });
    pc.addEventListener("connectionstatechange", () => {
      if (pc !== state.pc || !state.call) return;
      if (pc.connectionState === "connected") callStatus("Connected to the booth.");
      else if (pc.connectionState === "failed" || pc.connectionState === "disconnected") {
        callStatus("Audio and video are not getting through; waiting for the booth to retry.");
      }
    });
    return pc;
  }

  async function startLocalMedia() {
    if (state.local) return state.local;
    const tries = [
      [{ video: true, audio: true }, "camera and microphone"],
      [{ audio: true }, "microphone only"],
    ];
    const problems = [];
    if (navigator.mediaDevices && navigator.mediaDevices.getUserMedia) {
      for (const [constraints, label] of tries) {
        try {
          const stream = await navigator.mediaDevices.getUserMedia(constraints);
          if (!state.call) {
            stream.getTracks().forEach((t) => t.stop());
            return null;
          }
          state.local = stream;
          state.media = label;
          el("self-video").srcObject = stream;
          applyLocalSwitches();
          mediaNote(
            label === "microphone only"
              ? `Your camera could not be used (${problems.join(", ")}): ` +
                  "the resident can hear you but not see you."
              : "",
          );
          return stream;
        } catch (error) {
          problems.push(error.name || "error");
        }
      }
    } else {
      problems.push("no media devices");
    }
    state.media = "none";
    mediaNote(
      `Your camera and microphone could not be used (${problems.join(", ")}): ` +
        "the resident cannot see or hear you. Check the browser's camera and microphone " +
        "permissions for this page.",
    );
    return null;
  }

  async function answerOffer(message) {
    const stream = await state.localReady;
    if (!state.call || message.call_id !== state.call.call_id) return;
    if (!state.pc || state.pc.remoteDescription || state.pc.signalingState !== "stable") {
      // A re-offer (the booth reconnected, or media failed): a new peer connection.
      if (state.pc) {
        state.pc.close();
        state.rebuilds += 1;
      }
      state.channel = null;
      el("remote-video").srcObject = null;
      state.pc = makePeerConnection();
    }
    const pc = state.pc;
    await pc.setRemoteDescription({ type: "offer", sdp: message.sdp });
    if (stream) stream.getTracks().forEach((track) => pc.addTrack(track, stream));
    await pc.setLocalDescription(await pc.createAnswer());
    await gathered(pc, ANSWER_GATHER_MS);
    if (pc !== state.pc || !state.call || message.call_id !== state.call.call_id) return;
    send("answer", { call_id: message.call_id, sdp: pc.localDescription.sdp });
    state.answersSent += 1;
  }

  function offerFailed(error) {
    callStatus(`Could not answer the booth's offer (${error && error.name}); waiting for another.`);
  }

  function gathered(pc, ms) {
    // Every candidate goes inside the SDP (no trickle ICE), so wait for all of them.
    if (pc.iceGatheringState === "complete") return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        pc.removeEventListener("icegatheringstatechange", check);
        resolve();
      };
      const check = () => {
        if (pc.iceGatheringState === "complete") done();
      };
      const timer = setTimeout(done, ms);
      pc.addEventListener("icegatheringstatechange", check);
    });
  }

  function useChannel(channel) {
    state.channel = channel;
    channel.addEventListener("message", (event) => {
      let data;
      try {
        data = JSON.parse(event.data);
      } catch {
        return;
      }
      if (data && typeof data.event === "string" && state.call) {
        callEvent(state.call.call_id, data.event, "channel");
      }
    });
    const greet = () => {
      // States, not toggles: a new channel (after a rebuild) hears ours again.
      if (state.muted) sendOnChannel("muted");
      if (state.cameraOff) sendOnChannel("camera_off");
    };
    if (channel.readyState === "open") greet();
    else channel.addEventListener("open", greet);
  }

  function sendOnChannel(word) {
    if (state.channel && state.channel.readyState === "open") {
      state.channel.send(JSON.stringify({ event: word }));
    }
  }

  function tellCallState(word) {
    if (!state.call) return;
    sendOnChannel(word);
    send("call_state", { call_id: state.call.call_id, event: word });
  }

  function callEvent(callId, word, via) {
    if (!state.call || callId !== state.call.call_id) return;
    if (via === "channel" && word.startsWith("booth_")) return; // the hub's words alone
    state.lastCallEvent = word;
    switch (word) {
      case "door_open":
      case "door_closed":
        state.door = word === "door_open" ? "open" : "closed";
        break;
      case "emergency":
      case "emergency_cleared":
        state.emergency = word === "emergency";
        break;
      case "muted":
      case "unmuted":
        state.residentMuted = word === "muted";
        break;
      case "camera_off":
      case "camera_on":
        state.residentCameraOff = word === "camera_off";
        break;
      case "booth_offline":
        state.boothOffline = true;
        callStatus("The booth's connection dropped; waiting for it to come back.");
        break;
      case "booth_online":
        state.boothOffline = false;
        callStatus("The booth is back; reconnecting the call…");
        break;
      default:
        return;
    }
    renderCall();
  }

  function applyLocalSwitches() {
    if (!state.local) return;
    state.local.getAudioTracks().forEach((t) => (t.enabled = !state.muted));
    state.local.getVideoTracks().forEach((t) => (t.enabled = !state.cameraOff));
  }

  function toggleMute() {
    if (!state.call) return;
    state.muted = !state.muted;
    applyLocalSwitches();
    tellCallState(state.muted ? "muted" : "unmuted");
    renderCall();
  }

  function toggleCamera() {
    if (!state.call) return;
    state.cameraOff = !state.cameraOff;
    applyLocalSwitches();
    tellCallState(state.cameraOff ? "camera_off" : "camera_on");
    renderCall();
  }

  function hangUp() {
    if (!state.call) return;
    if (send("end_call", { call_id: state.call.call_id })) callStatus("Ending the call…");
    else endCall("clinician_ended");
  }

  function endCall(reason) {
    if (state.pc) state.pc.close();
    if (state.local) state.local.getTracks().forEach((t) => t.stop());
    el("remote-video").srcObject = null;
    el("self-video").srcObject = null;
    Object.assign(state, {
      call: null,
      pc: null,
      channel: null,
      local: null,
      localReady: Promise.resolve(null),
      offers: Promise.resolve(),
      media: "none",
      muted: false,
      cameraOff: false,
      boothOffline: false,
      lastEnded: reason,
      phase: state.ws && state.ws.readyState === WebSocket.OPEN ? "lobby" : "disconnected",
    });
    mediaNote("");
    notice(ENDED[reason] || `The call ended (${reason}).`);
    render();
  }

  // ----------------------------------------------------------------- alerts

  const alarm = { context: null, timer: null, beeps: 0, chimes: 0 };

  function isEmergency(alert) {
    return !Object.hasOwn(MAINTENANCE, alert.kind);
  }

  function emergencyCount() {
    let count = 0;
    for (const alert of state.alerts.values()) if (isEmergency(alert)) count += 1;
    return count;
  }

  function audioContext() {
    if (!alarm.context) {
      const Context = window.AudioContext || window.webkitAudioContext;
      if (Context) alarm.context = new Context();
    }
    return alarm.context;
  }

  function beep() {
    const context = audioContext();
    const blocked = !context || context.state !== "running";
    el("sound-blocked").hidden = !blocked;
    if (!context) return;
    if (context.state === "suspended") context.resume().catch(() => {});
    if (context.state !== "running") return;
    const t = context.currentTime;
    for (const [start, frequency] of [
      [0, 880],
      [0.3, 660],
    ]) {
      const oscillator = context.createOscillator();
      const gain = context.createGain();
      oscillator.type = "square";
      oscillator.frequency.value = frequency;
      gain.gain.setValueAtTime(0.0001, t + start);
      gain.gain.exponentialRampToValueAtTime(0.25, t + start + 0.02);
      gain.gain.exponentialRampToValueAtTime(0.0001, t + start + 0.25);
      oscillator.connect(gain).connect(context.destination);
      oscillator.start(t + start);
      oscillator.stop(t + start + 0.27);
    }
    alarm.beeps += 1;
  }

  function chime() {
    // One soft tone for a new maintenance notice: never repeated, never over the alarm, and
    // dropped rather than played late if the browser holds sound back.
    const context = audioContext();
    if (!context || alarm.timer !== null) return;
    if (context.state === "running") {
      playChime(context);
      return;
    }
    const asked = Date.now();
    context
      .resume()
      .then(() => {
        const late = Date.now() - asked > 2000;
        if (context.state === "running" && alarm.timer === null && !late) playChime(context);
      })
      .catch(() => {});
  }

  function playChime(context) {
    const t = context.currentTime;
    const oscillator = context.createOscillator();
    const gain = context.createGain();
    oscillator.type = "sine";
    oscillator.frequency.value = 523;
    gain.gain.setValueAtTime(0.0001, t);
    gain.gain.exponentialRampToValueAtTime(0.1, t + 0.03);
    gain.gain.exponentialRampToValueAtTime(0.0001, t + 0.5);
    oscillator.connect(gain).connect(context.destination);
    oscillator.start(t);
    oscillator.stop(t + 0.52);
    alarm.chimes += 1;
  }

  function updateAlarm() {
    const sounding = emergencyCount() > 0;
    if (sounding && alarm.timer === null) {
      alarm.timer = setInterval(beep, BEEP_EVERY_MS);
      beep();
    } else if (!sounding && alarm.timer !== null) {
      clearInterval(alarm.timer);
      alarm.timer = null;
      el("sound-blocked").hidden = true;
    }
  }

  function unlockSound() {
    // Browsers start audio only after the user has interacted with the page.
    const context = audioContext();
    if (context && context.state === "suspended") context.resume().catch(() => {});
  }

  function acknowledge(alertId) {
    const id = send("ack_alert", { alert_id: alertId });
    if (!id) return;
    state.pending.set(id, "ack_alert");
    state.acking.add(alertId);
    renderAlerts();
  }

  // -------------------------------------------------------------- rendering

  function setText(testid, text) {
    el(testid).textContent = text;
  }

  function notice(text) {
    const node = el("notice");
    node.textContent = text;
    node.hidden = !text;
  }

  function callStatus(text) {
    setText("call-status", text);
  }

  function mediaNote(text) {
    const node = el("media-note");
    node.textContent = text;
    node.hidden = !text;
  }

  function boothById(boothId) {
    return state.snapshot.booths.find((b) => b.booth_id === boothId) || null;
  }

  function cell(row, text, testid) {
    const td = document.createElement("td");
    td.textContent = text;
    if (testid) td.dataset.testid = testid;
    row.appendChild(td);
    return td;
  }

  function waited(since) {
    const seconds = Math.max(0, Math.floor((Date.now() - Date.parse(since)) / 1000));
    const h = Math.floor(seconds / 3600);
    const m = Math.floor((seconds % 3600) / 60);
    const s = String(seconds % 60).padStart(2, "0");
    return h ? `${h}:${String(m).padStart(2, "0")}:${s}` : `${m}:${s}`;
  }

  function tick() {
    document.querySelectorAll('[data-testid="wait"]').forEach((node) => {
      node.textContent = waited(node.dataset.since);
    });
  }

  function renderQueue() {
    const table = el("queue");
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const entry of state.snapshot.queue) {
      const booth = boothById(entry.booth_id);
      const row = document.createElement("tr");
      row.dataset.testid = "queue-row";
      row.dataset.boothId = entry.booth_id;
      cell(row, booth ? booth.name : entry.booth_id, "queue-booth");
      cell(row, booth ? booth.site : "");
      cell(row, entry.language);
      let kind = entry.audio_only ? "Audio only" : "Video";
      if (entry.has_appointment) kind += ", your appointment";
      cell(row, kind);
      const wait = cell(row, waited(entry.since), "wait");
      wait.dataset.since = entry.since;
      const action = document.createElement("td");
      const button = document.createElement("button");
      button.type = "button";
      button.textContent = "Answer";
      button.dataset.testid = "answer";
      button.disabled = state.phase !== "lobby";
      button.addEventListener("click", () => answerBooth(entry.booth_id));
      action.appendChild(button);
      row.appendChild(action);
      body.appendChild(row);
    }
    table.hidden = state.snapshot.queue.length === 0;
    el("queue-empty").hidden = state.snapshot.queue.length > 0;
  }

  function renderBooths() {
    const table = el("booths");
    const body = table.tBodies[0];
    body.replaceChildren();
    for (const booth of state.snapshot.booths) {
      const row = document.createElement("tr");
      row.dataset.testid = "booth-row";
      row.dataset.boothId = booth.booth_id;
      row.dataset.state = booth.online ? booth.state : "offline";
      cell(row, booth.name);
      cell(row, booth.site);
      cell(row, booth.online ? BOOTH_STATE[booth.state] || booth.state : "Offline", "booth-status");
      const door = booth.door === "open" ? "Door open" : "Door closed";
      cell(row, booth.online ? door : `${door} (last known)`, "booth-door");
      body.appendChild(row);
    }
    table.hidden = state.snapshot.booths.length === 0;
    el("booths-empty").hidden = state.snapshot.booths.length > 0;
  }

  function renderAlerts() {
    const list = el("alerts-list");
    const maintenance = el("maintenance-list");
    list.replaceChildren();
    maintenance.replaceChildren();
    for (const alert of state.alerts.values()) {
      const urgent = isEmergency(alert);
      const item = document.createElement("li");
      item.dataset.testid = "alert";
      item.dataset.alertId = alert.alert_id;
      item.dataset.kind = urgent ? "emergency" : "maintenance";
      const booth = boothById(alert.booth_id);
      // Each part in its own element, joined by punctuation so it also reads as a sentence.
      const parts = [
        ["alert-kind", urgent ? `${alert.kind.toUpperCase()}:` : "Maintenance:", " "],
        ...(urgent ? [] : [["alert-what", MAINTENANCE[alert.kind], " "]]),
        ["alert-site", alert.site.name, ", "],
        ["alert-address", alert.site.street_address, ", "],
        ["alert-room", alert.site.room, ". "],
        ["alert-booth", `Booth: ${booth ? booth.name : alert.booth_id}`, ". "],
        ["alert-time", `Raised ${new Date(alert.raised_at).toLocaleString()}`, ". "],
      ];
      for (const [testid, text, after] of parts) {
        const span = document.createElement("span");
        span.dataset.testid = testid;
        span.textContent = text;
        item.append(span, after);
      }
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.testid = "ack";
      const acking = state.acking.has(alert.alert_id);
      button.textContent = acking ? "Acknowledging…" : "Acknowledge";
      button.disabled = acking;
      button.addEventListener("click", () => acknowledge(alert.alert_id));
      item.appendChild(button);
      (urgent ? list : maintenance).appendChild(item);
    }
    const count = emergencyCount();
    el("alerts").hidden = count === 0;
    el("maintenance").hidden = state.alerts.size === count;
    el("alarm-banner").hidden = count === 0;
    setText(
      "alarm-text",
      count === 1
        ? "1 unacknowledged alert. Send help to the address below, then acknowledge it."
        : `${count} unacknowledged alerts. Send help to the addresses below, then acknowledge each.`,
    );
    updateAlarm();
  }

  function renderCall() {
    const inCall = state.call !== null;
    el("call").hidden = !inCall;
    el("lobby").hidden = inCall;
    if (!inCall) return;
    const booth = boothById(state.call.booth_id);
    setText("call-booth", booth ? `${booth.name} (${booth.site})` : state.call.booth_id);
    setText(
      "door-indicator",
      state.door === "open"
        ? "Door: OPEN. The booth's camera and microphone are paused for the resident's privacy until it closes."
        : "Door: closed",
    );
    const emergency = el("emergency-indicator");
    emergency.textContent = state.emergency ? "EMERGENCY button pressed" : "No emergency";
    emergency.dataset.active = String(state.emergency);
    setText(
      "resident-indicator",
      `Resident: microphone ${state.residentMuted ? "muted" : "on"}, ` +
        `camera ${state.residentCameraOff ? "off" : "on"}`,
    );
    const mute = el("mute");
    mute.textContent = state.muted ? "Unmute" : "Mute";
    mute.setAttribute("aria-pressed", String(state.muted));
    const camera = el("camera");
    camera.textContent = state.cameraOff ? "Camera on" : "Camera off";
    camera.setAttribute("aria-pressed", String(state.cameraOff));
  }

  function render() {
    renderBooths();
    renderQueue();
    renderAlerts();
    renderCall();
  }

  // ------------------------------------------------------------ test hooks

  async function stats() {
    const out = { framesDecoded: 0, audioBytesReceived: 0, codec: null };
    if (!state.pc) return out;
    const report = await state.pc.getStats();
    const codecs = new Map();
    report.forEach((s) => {
      if (s.type === "codec") codecs.set(s.id, s.mimeType);
    });
    report.forEach((s) => {
      if (s.type !== "inbound-rtp") return;
      if (s.kind === "video") {
        out.framesDecoded += s.framesDecoded || 0;
        if (s.codecId && codecs.has(s.codecId)) out.codec = codecs.get(s.codecId);
      } else if (s.kind === "audio") {
        out.audioBytesReceived += s.bytesReceived || 0;
      }
    });
    return out;
  }

  window.consoleTest = {
    get state() {
      return state.phase;
    },
    get pc() {
      return state.pc;
    },
    get call() {
      if (!state.call) return null;
      const { call_id, booth_id, audio_only, iceServers } = state.call;
      return { call_id, booth_id, audio_only, iceServers };
    },
    get lastCallEvent() {
      return state.lastCallEvent;
    },
    get lastEnded() {
      return state.lastEnded;
    },
    get lastError() {
      return state.lastError;
    },
    get alerts() {
      return [...state.alerts.values()];
    },
    get alarm() {
      return {
        sounding: alarm.timer !== null,
        audible: Boolean(alarm.context && alarm.context.state === "running"),
        beeps: alarm.beeps,
        chimes: alarm.chimes,
      };
    },
    get snapshot() {
      return state.snapshot;
    },
    get media() {
      return state.media;
    },
    get door() {
      return state.door;
    },
    get emergency() {
      return state.emergency;
    },
    get boothOffline() {
      return state.boothOffline;
    },
    get muted() {
      return state.muted;
    },
    get cameraOff() {
      return state.cameraOff;
    },
    get dataChannel() {
      return state.channel ? state.channel.readyState : null;
    },
    get rebuilds() {
      return state.rebuilds;
    },
    get answersSent() {
      return state.answersSent;
    },
    get received() {
      return state.received.slice();
    },
    stats,
  };

  // ------------------------------------------------------------------ start

  el("mute").addEventListener("click", toggleMute);
  el("camera").addEventListener("click", toggleCamera);
  el("end-call").addEventListener("click", hangUp);
  document.addEventListener("pointerdown", unlockSound, { capture: true });
  document.addEventListener("keydown", unlockSound, { capture: true });
  setInterval(tick, 1000);
  render();
  connect();
})();
