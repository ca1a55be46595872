// Batch progress, live: the organization's WebSocket (/ws/orgs/<org>/live/) carries a
// "batch" message whenever a batch's counts change; this file updates the matching rows.
(function () {
  "use strict";

  function paint(root, data) {
    var done = data.completed + data.failed;
    var set = function (name, value) {
      var node = root.querySelector('[data-field="' + name + '"]');
      if (node) {
        node.textContent = value;
      }
    };
    set("status", data.status);
    set("done", done);
    set("completed", data.completed);
    set("failed", data.failed);
    set("cost", data.cost);
    var bar = root.querySelector('[data-field="bar"]');
    if (bar) {
      bar.dataset.percent = data.total ? Math.round((100 * done) / data.total) : 0;
      bar.style.width = bar.dataset.percent + "%";
      bar.parentElement.setAttribute("aria-valuenow", done);
    }
  }

  document.querySelectorAll('[data-field="bar"]').forEach(function (bar) {
    bar.style.width = (bar.dataset.percent || 0) + "%";
  });

  var configElement = document.getElementById("batch-live-config");
  if (!configElement) {
    return;
  }
  var config = JSON.parse(configElement.textContent);
  var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
  var retry = 1000;
  var badge = document.querySelector("[data-live-reconnecting]");

  function reconnecting(shown) {
    if (badge) {
      badge.hidden = !shown;
    }
  }

  function connect() {
    var socket = new WebSocket(scheme + window.location.host + config.ws_url);
    socket.addEventListener("message", function (event) {
      var message = JSON.parse(event.data);
      if (message.type !== "batch" || !message.batch) {
        return;
      }
      document.querySelectorAll('[data-batch="' + message.batch.id + '"]').forEach(function (root) {
        paint(root, message.batch);
      });
    });
    socket.addEventListener("open", function () {
      retry = 1000;
      reconnecting(false);
    });
    socket.addEventListener("close", function (event) {
      if (event.code === 4403) {
        return; // not a member (any more): no use trying again
      }
      reconnecting(true);
      // Exponential backoff with jitter, so a restarted server isn't met by every page at once.
      window.setTimeout(connect, retry / 2 + Math.random() * (retry / 2));
      retry = Math.min(retry * 2, 30000);
    });
  }
  connect();
})();
