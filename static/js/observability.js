// The live overview and logs: one WebSocket per page (/ws/orgs/<org>/live/), no polling.
// The server pushes the organization's fresh 30-day figures after each written batch of
// requests, plus what that batch added (per day, by model and by key) and the requests
// themselves; this file applies them to the figures, the charts and the tables.
(function () {
  "use strict";

  var configElement = document.getElementById("live-config");
  if (!configElement) {
    return;
  }
  var config = JSON.parse(configElement.textContent);
  var integer = new Intl.NumberFormat("en-US", { maximumFractionDigits: 0 });

  // ---------------------------------------------------------------- figures
  function formatFigure(name, value) {
    if (value === null || value === undefined) {
      return "—";
    }
    switch (name) {
      case "uptime":
      case "error_rate":
        return value + "%";
      case "cost_display":
        return value;
      case "avg_latency_ms":
      case "avg_ttft_ms":
        return integer.format(Math.round(value)) + " ms";
      default:
        return integer.format(value);
    }
  }

  function applyFigures(figures) {
    if (!figures) {
      return;
    }
    document.querySelectorAll("[data-figure]").forEach(function (node) {
      var name = node.dataset.figure;
      if (Object.prototype.hasOwnProperty.call(figures, name)) {
        var text = formatFigure(name, figures[name]);
        if (node.textContent !== text) {
          node.textContent = text;
        }
      }
    });
  }

  // ---------------------------------------------------------------- charts
  var series = config.series || null;
  var dimension = "by_model";
  var charts = {};
  var palette = [
    "#4f46e5", "#10b981", "#f59e0b", "#ef4444", "#06b6d4",
    "#8b5cf6", "#ec4899", "#84cc16", "#64748b", "#f97316",
  ];

  function metricValues(item, metric) {
    if (metric === "cost") {
      return item.cost_nanousd.map(function (n) { return n / 1e9; });
    }
    if (metric === "latency") {
      return item.latency_ms_sum.map(function (sum, i) {
        return item.requests[i] ? Math.round(sum / item.requests[i]) : null;
      });
    }
    return item[metric];
  }

  function formatUsdTick(value) {
    if (!value) {
      return "$0";
    }
    var places = Math.max(2, 1 - Math.floor(Math.log10(Math.abs(value))) + 1);
    return "$" + Number(value).toFixed(Math.min(places, 12)).replace(/\.?0+$/, "");
  }

  function datasets(metric) {
    var items = series[dimension] || {};
    return Object.keys(items).sort().map(function (name, i) {
      var color = palette[i % palette.length];
      return {
        label: items[name].label,
        data: metricValues(items[name], metric),
        backgroundColor: color,
        borderColor: color,
        spanGaps: true,
        pointRadius: 2,
      };
    });
  }

  function buildCharts() {
    if (!series || typeof window.Chart === "undefined") {
      return;
    }
    document.querySelectorAll("canvas[data-chart]").forEach(function (canvas) {
      var metric = canvas.dataset.chart;
      var line = metric === "latency";
      charts[metric] = new window.Chart(canvas, {
        type: line ? "line" : "bar",
        data: { labels: series.days.map(function (d) { return d.slice(5); }), datasets: datasets(metric) },
        options: {
          animation: false,
          responsive: true,
          interaction: { mode: "index", intersect: false },
          plugins: { legend: { position: "bottom", labels: { boxWidth: 12 } } },
          scales: {
            x: { stacked: !line, grid: { display: false } },
            y: {
              stacked: !line,
              beginAtZero: true,
              ticks: metric === "cost" ? { callback: formatUsdTick } : {},
            },
          },
        },
      });
    });
  }

  function refreshCharts() {
    Object.keys(charts).forEach(function (metric) {
      var chart = charts[metric];
      chart.data.labels = series.days.map(function (d) { return d.slice(5); });
      chart.data.datasets = datasets(metric);
      chart.update("none");
    });
  }

  function zeros() {
    return series.days.map(function () { return 0; });
  }

  function applyDelta(delta) {
    if (!series || !delta) {
      return;
    }
    ["by_model", "by_key"].forEach(function (dim) {
      (delta[dim] || []).forEach(function (item) {
        var index = series.days.indexOf(item.day);
        if (index < 0) {
          if (item.day < series.days[series.days.length - 1]) {
            return; // older than the window
          }
          // A new day began while the page was open: slide the window by one.
          series.days.push(item.day);
          series.days.shift();
          ["by_model", "by_key"].forEach(function (d) {
            Object.keys(series[d]).forEach(function (name) {
              ["requests", "tokens", "cost_nanousd", "latency_ms_sum"].forEach(function (m) {
                series[d][name][m].push(0);
                series[d][name][m].shift();
              });
            });
          });
          index = series.days.length - 1;
        }
        var target = series[dim][item.name];
        if (!target) {
          target = series[dim][item.name] = {
            label: dim === "by_key" ? keyName(item.name) : item.name,
            requests: zeros(),
            tokens: zeros(),
            cost_nanousd: zeros(),
            latency_ms_sum: zeros(),
          };
        }
        target.requests[index] += item.requests;
        target.tokens[index] += item.tokens;
        target.cost_nanousd[index] += item.cost_nanousd;
        target.latency_ms_sum[index] += item.latency_ms_sum;
      });
    });
    refreshCharts();
  }

  document.querySelectorAll("[data-breakdown]").forEach(function (button) {
    button.addEventListener("click", function () {
      dimension = button.dataset.breakdown;
      document.querySelectorAll("[data-breakdown]").forEach(function (other) {
        var on = other === button;
        other.classList.toggle("active", on);
        other.setAttribute("aria-pressed", on ? "true" : "false");
      });
      refreshCharts();
    });
  });

  // ---------------------------------------------------------------- request rows
  function keyName(keyId) {
    if (!keyId) {
      return "No key";
    }
    return (config.keys && config.keys[keyId]) || "Playground";
  }

  function cell(text, className) {
    var td = document.createElement("td");
    if (className) {
      td.className = className;
    }
    if (text !== undefined && text !== null) {
      td.textContent = text;
    }
    return td;
  }

  function badge(text, kind) {
    var span = document.createElement("span");
    span.className = "badge badge-soft-" + kind;
    span.textContent = text;
    return span;
  }

  function statusKind(status) {
    if (status === "ok") {
      return "success";
    }
    if (status === "client_disconnected" || status === "rate_limited" || status === "upstream_rate_limited") {
      return "warning";
    }
    return "danger";
  }

  function rowFor(item) {
    var tr = document.createElement("tr");
    tr.dataset.generation = item.id;
    var time = cell(null, "text-nowrap");
    var link = document.createElement("a");
    link.href = config.log_url.replace(/gen-0{32}/, item.id);
    link.className = "font-monospace small";
    link.setAttribute("data-testid", "log-link");
    link.textContent = item.received_at.slice(0, 19).replace("T", " ");
    time.appendChild(link);
    tr.appendChild(time);
    var model = cell(item.model, "text-truncate");
    var key = document.createElement("div");
    key.className = "small cell-sub text-truncate";
    key.textContent = keyName(item.key_id);
    model.appendChild(key);
    tr.appendChild(model);
    var provider = cell(item.provider, "text-nowrap");
    if (item.attempts > 1) {
      provider.appendChild(document.createTextNode(" "));
      provider.appendChild(badge(item.attempts + "×", "warning"));
    }
    tr.appendChild(provider);
    var status = cell();
    status.appendChild(badge(item.status, statusKind(item.status)));
    tr.appendChild(status);
    tr.appendChild(cell(item.prompt_tokens + " → " + item.completion_tokens, "text-end text-nowrap"));
    tr.appendChild(cell("$" + item.cost_usd, "text-end text-nowrap"));
    tr.appendChild(cell(item.total_ms + " ms", "text-end text-nowrap"));
    return tr;
  }

  function applyRecent(recent) {
    if (!recent || !recent.length) {
      return;
    }
    document.querySelectorAll("tbody[data-live-rows]").forEach(function (tbody) {
      var limit = parseInt(tbody.dataset.liveRows, 10) || 50;
      var empty = tbody.querySelector("[data-empty-row]");
      if (empty) {
        empty.remove();
      }
      for (var i = recent.length - 1; i >= 0; i--) {
        var item = recent[i];
        if (tbody.querySelector('tr[data-generation="' + item.id + '"]')) {
          continue;
        }
        tbody.insertBefore(rowFor(item), tbody.firstChild);
      }
      while (tbody.rows.length > limit) {
        tbody.deleteRow(tbody.rows.length - 1);
      }
    });
  }

  // ---------------------------------------------------------------- the socket
  var statusBadge = document.getElementById("live-status");

  function setStatus(kind, label) {
    if (!statusBadge) {
      return;
    }
    statusBadge.className = "badge badge-soft-" + kind;
    statusBadge.dataset.state = label.toLowerCase();
    var text = statusBadge.querySelector("[data-live-label]");
    if (text) {
      text.textContent = label;
    }
  }

  var retry = 0;

  function connect() {
    var scheme = window.location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(scheme + window.location.host + config.ws_path);
    socket.addEventListener("open", function () {
      retry = 0;
      setStatus("success", "Live");
    });
    socket.addEventListener("message", function (event) {
      var message;
      try {
        message = JSON.parse(event.data);
      } catch (e) {
        return;
      }
      applyFigures(message.figures);
      if (message.type === "update") {
        applyDelta(message.delta);
        applyRecent(message.recent);
      }
    });
    socket.addEventListener("close", function (event) {
      if (event.code === 4403) {
        setStatus("secondary", "Offline");
        return;
      }
      setStatus("warning", "Reconnecting");
      retry = Math.min(retry + 1, 6);
      // Exponential backoff with jitter, so a restarted server isn't met by every page at once.
      var delay = 500 * Math.pow(2, retry);
      window.setTimeout(connect, delay / 2 + Math.random() * (delay / 2));
    });
  }

  buildCharts();
  if ("WebSocket" in window) {
    connect();
  }
})();
