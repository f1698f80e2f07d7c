// Hypermetric's web view: a tooltip on chart points, the grid's live refresh, and writes
// that send the token in a header. Hand-written, no dependencies.
(function () {
  "use strict";

  function tooltips() {
    var tip = document.getElementById("tooltip");
    if (!tip) return;
    document.querySelectorAll("svg.history circle.point").forEach(function (point) {
      point.addEventListener("mouseenter", function (event) {
        tip.textContent = point.getAttribute("data-tip");
        tip.hidden = false;
        point.classList.add("hover");
        move(event);
      });
      point.addEventListener("mousemove", move);
      point.addEventListener("mouseleave", function () {
        tip.hidden = true;
        point.classList.remove("hover");
      });
    });
    function move(event) {
      tip.style.left = event.clientX + 14 + "px";
      tip.style.top = event.clientY + 14 + "px";
    }
  }

  function liveGrid() {
    var holder = document.getElementById("grid-holder");
    if (!holder) return;
    // every 3 s while a run in view is queued or running, else every 30 s (new runs)
    function later() {
      var grid = document.getElementById("grid");
      var live = grid && grid.getAttribute("data-live") === "1";
      setTimeout(refresh, live ? 3000 : 30000);
    }
    function refresh() {
      fetch(holder.getAttribute("data-src"), { headers: { Accept: "text/html" } })
        .then(function (response) { return response.ok ? response.text() : null; })
        .then(function (html) { if (html !== null) holder.innerHTML = html; })
        .catch(function () {})
        .then(later);
    }
    later();
  }

  function writes() {
    var form = document.getElementById("write-form");
    if (!form) return;
    var result = document.getElementById("write-result");
    var name = form.getAttribute("data-evaluation");
    var token = document.getElementById("token");
    token.value = sessionStorage.getItem("hypermetric-token") || "";
    form.querySelectorAll("button[data-action]").forEach(function (button) {
      button.addEventListener("click", function () {
        var action = button.getAttribute("data-action");
        var body = {};
        if (action === "backfill") {
          body = { start: document.getElementById("bf-start").value,
                   end: document.getElementById("bf-end").value };
        }
        var headers = { "Content-Type": "application/json" };
        if (token.value) {
          headers.Authorization = "Bearer " + token.value;
          sessionStorage.setItem("hypermetric-token", token.value);
        }
        fetch("/api/evaluations/" + encodeURIComponent(name) + "/" + action, {
          method: "POST", headers: headers, body: JSON.stringify(body), credentials: "omit"
        }).then(function (response) {
          return response.json().then(function (data) {
            result.className = "write-result " + (response.ok ? "ok" : "refused");
            result.textContent = response.ok
              ? action + " done: " + JSON.stringify(data)
              : response.status + ": " + data.error;
          });
        }).catch(function (error) {
          result.className = "write-result refused";
          result.textContent = String(error);
        });
      });
    });
  }

  document.addEventListener("DOMContentLoaded", function () {
    tooltips();
    liveGrid();
    writes();
  });
})();
