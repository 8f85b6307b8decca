// studiox portal: the live rail (server-sent events). No other script; no request leaves this server.
"use strict";
document.addEventListener("DOMContentLoaded", () => {
  const rail = document.getElementById("rail");
  if (!rail || rail.dataset.live !== "yes") return;
  const source = new EventSource(`/runs/${rail.dataset.run}/events?after=${rail.dataset.after}`);
  source.onmessage = (message) => {
    const data = JSON.parse(message.data);
    const stick = rail.scrollTop + rail.clientHeight >= rail.scrollHeight - 4;
    rail.append(document.createTextNode(data.line + "\n"));
    if (stick) rail.scrollTop = rail.scrollHeight;
    if (data.type === "waiting" || data.type === "run_finished") {
      document.getElementById("status").textContent = data.type === "waiting" ? "waiting" : "finished";
    }
  };
  source.addEventListener("end", () => { source.close(); setTimeout(() => location.reload(), 300); });
});
