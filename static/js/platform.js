// The public model pages' platform totals, live: /ws/platform/live/ sends the 30-day totals on
// joining, then what each written batch of requests added; this file keeps the sums and shows
// them. Uptime is worked out from requests, errors and rate limits, as the server does.
(function () {
  "use strict";

  var panel = document.querySelector("[data-platform-live]");
  if (!panel || !("WebSocket" in window)) {
    return;
  }
  var integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });
  var totals = null;

  function uptime() {
    var judged = totals.requests - totals.rate_limited;
    if (judged <= 0) {
      return null;
    }
    var successes = judged - totals.errors;
    return Math.round((successes / judged) * 10000) / 100;
  }

  function show() {
    panel.querySelectorAll("[data-total]").forEach(function (node) {
      var name = node.dataset.total;
      var text;
      if (name === "uptime") {
        var value = uptime();
        text = value === null ? "—" : value + "%";
      } else {
        text = integer.format(totals[name] || 0);
      }
      if (node.textContent !== text) {
        node.textContent = text;
      }
    });
  }

  var retry = 0;

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + panel.dataset.platformLive);
    socket.addEventListener("open", function () {
      retry = 0;
      panel.dataset.state = "live";
    });
    socket.addEventListener("message", function (event) {
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      if (message.type === "snapshot") {
        totals = message.totals;
      } else if (message.type === "update" && totals) {
        Object.keys(message.delta).forEach(function (name) {
          totals[name] = (totals[name] || 0) + message.delta[name];
        });
      } else {
        return;
      }
      show();
    });
    socket.addEventListener("close", function () {
      panel.dataset.state = "reconnecting";
      retry = Math.min(retry + 1, 6);
      window.setTimeout(connect, 500 * Math.pow(2, retry));
    });
  }

  connect();
})();
