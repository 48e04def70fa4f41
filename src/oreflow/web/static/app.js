// oreflow web pages: the run form, progress polling and the stockpile form. No build step.
"use strict";
const oreflow = (() => {
  async function api(method, url, body) {
    const res = await fetch(url, {
      method, headers: body ? {"Content-Type": "application/json"} : {},
      body: body ? JSON.stringify(body) : undefined,
    });
    let data = null;
    try { data = await res.json(); } catch (e) { data = null; }
    if (!res.ok) {
      const detail = data && data.detail ? data.detail : `${res.status} ${res.statusText}`;
      throw new Error(typeof detail === "string" ? detail : JSON.stringify(detail));
    }
    return data;
  }

  function showError(el, message) {
    el.textContent = message;
    el.hidden = !message;
  }

  function runForm() {
    const form = document.getElementById("run-form");
    if (!form) return;
    const scenarios = JSON.parse(document.getElementById("scenarios-data").textContent);
    const byName = Object.fromEntries(scenarios.map((s) => [s.name, s]));
    const select = document.getElementById("scenario");
    const yaml = document.getElementById("yaml");
    const edit = document.getElementById("edit-yaml");
    const desc = document.getElementById("scenario-description");
    const err = document.getElementById("run-error");
    const describe = () => {
      const s = byName[select.value];
      desc.textContent = `${s.description} (${s.months} months from ${s.start}, ` +
        `${s.shocks} shock(s))`;
      if (!edit.checked) yaml.value = s.yaml;
    };
    select.addEventListener("change", () => { yaml.value = byName[select.value].yaml; describe(); });
    edit.addEventListener("change", () => { yaml.hidden = !edit.checked; });
    describe();
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      showError(err, "");
      const body = {
        paths: Number(document.getElementById("paths").value),
        seed: Number(document.getElementById("seed").value || 0),
      };
      const months = document.getElementById("months").value;
      if (months) body.months = Number(months);
      if (edit.checked) body.scenario_yaml = yaml.value; else body.scenario = select.value;
      const button = document.getElementById("run-button");
      button.disabled = true;
      try {
        const run = await api("POST", "/api/runs", body);
        window.location.href = run.page;
      } catch (e) {
        showError(err, e.message);
        button.disabled = false;
      }
    });
  }

  function pollRun(id) {
    const cancel = document.getElementById("cancel-button");
    if (cancel) {
      cancel.addEventListener("click", async () => {
        cancel.disabled = true;
        try {
          await api("DELETE", `/api/runs/${id}`);
          cancel.textContent = "Cancelling...";
        } catch (e) {
          showError(document.getElementById("cancel-error"), e.message);
          cancel.disabled = false;
        }
      });
    }
    const bar = document.getElementById("progress-bar");
    const text = document.getElementById("progress-text");
    const status = document.getElementById("run-status");
    const tick = async () => {
      let run;
      try { run = await api("GET", `/api/runs/${id}`); } catch (e) {
        text.textContent = e.message; setTimeout(tick, 2000); return;
      }
      const pct = Math.round(run.progress * 1000) / 10;
      bar.style.width = `${pct}%`;
      text.textContent = `${Math.round(pct)}%`;
      status.textContent = run.status;
      status.className = `status ${run.status}`;
      if (["done", "failed", "cancelled"].includes(run.status)) window.location.reload();
      else setTimeout(tick, 500);
    };
    setTimeout(tick, 300);
  }

  const fmt = (x, d = 0) => (x === null || x === undefined) ? "n/a" :
    Number(x).toLocaleString("en-US", {maximumFractionDigits: d, minimumFractionDigits: d});

  function row(cells, tag = "td") {
    const tr = document.createElement("tr");
    for (const c of cells) {
      const td = document.createElement(tag);
      td.textContent = c;
      if (tag === "td" && /^[-+\d,.]+$|^n\/a$/.test(c)) td.className = "n";
      tr.appendChild(td);
    }
    return tr;
  }

  function stockpileForm() {
    const form = document.getElementById("stockpile-form");
    if (!form) return;
    const err = document.getElementById("plan-error");
    const wait = document.getElementById("plan-wait");
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      showError(err, "");
      const scenarios = {};
      for (const w of document.querySelectorAll(".weight")) {
        if (Number(w.value) > 0) scenarios[w.dataset.name] = Number(w.value);
      }
      const body = {
        budget_usd: Number(document.getElementById("budget").value) * 1e9,
        perspective: document.getElementById("perspective").value.trim(),
        paths: Number(document.getElementById("sp-paths").value),
        eval_paths: Number(document.getElementById("sp-eval").value),
        months: Number(document.getElementById("sp-months").value),
        seed: Number(document.getElementById("sp-seed").value || 0),
        cvar_weight: Number(document.getElementById("cvar").value || 0),
        scenarios,
      };
      const commodities = [...document.querySelectorAll(".commodity")]
        .filter((c) => c.checked).map((c) => c.dataset.id);
      const basket = commodities.length > 1 || (commodities.length === 1 && commodities[0] !== "REE");
      if (basket) body.commodities = commodities;
      const button = document.getElementById("plan-button");
      button.disabled = true; wait.hidden = false;
      try {
        const plan = await api("POST", "/api/stockpile", body);
        document.getElementById("plan-headline").textContent =
          `${plan.perspective}: purchases ${fmt(plan.spent_usd / 1e9, 3)} B USD, carrying cost ` +
          `${fmt(plan.carry_usd_per_year / 1e6, 1)} M USD/yr (budget ${fmt(plan.budget_usd / 1e9, 2)} B USD).`;
        const charts = document.getElementById("plan-charts");
        charts.replaceChildren();
        for (const [name, fig] of Object.entries(plan.charts || {})) {
          const div = document.createElement("div");
          div.id = `plan-chart-${name}`;
          div.className = "chart";
          charts.appendChild(div);
          if (window.Plotly) Plotly.newPlot(div, fig.data, fig.layout, {displaylogo: false, responsive: true});
        }
        const sp = document.getElementById("plan-spend");
        sp.hidden = !plan.spend_by_commodity;
        if (plan.spend_by_commodity) {
          sp.replaceChildren(row(["Commodity", "Purchases, USD", "Cost over the tenor, USD",
                                  "Last dollar avoids, USD", "Next dollar avoids, USD"], "th"));
          for (const [c, v] of Object.entries(plan.spend_by_commodity)) {
            const m = plan.marginal_value_per_usd[c];
            sp.appendChild(row([c, fmt(v.purchase_usd), fmt(v.cost_over_tenor_usd),
                                m.last === null ? "n/a" : fmt(m.last, 4), fmt(m.next, 4)]));
          }
        }
        const h = document.getElementById("plan-holdings");
        const cover = (x) => plan.spend_by_commodity
          ? (plan.days_of_cover[x.commodity] || {})[x.element] : plan.days_of_cover[x.element];
        h.replaceChildren(row([...(plan.spend_by_commodity ? ["Commodity"] : []), "Element", "Form",
                               "Tonnes", "USD", "Days of cover"], "th"));
        for (const x of plan.holdings) {
          h.appendChild(row([...(plan.spend_by_commodity ? [x.commodity] : []), x.element, x.form,
                             fmt(x.t, 1), fmt(x.usd), fmt(cover(x))]));
        }
        if (!plan.holdings.length) h.appendChild(row(["nothing worth holding at this budget", "", "", "", ""]));
        const e = document.getElementById("plan-eval");
        const ev2 = plan.evaluation;
        e.replaceChildren(row(["Strategy", "Expected", "CVaR 95%"], "th"));
        for (const k of ["plan", "rule_equal_money", "rule_60_days", "none"]) {
          e.appendChild(row([k, fmt(ev2.expected_unserved_usd[k]), fmt(ev2.cvar95_unserved_usd[k])]));
        }
        document.getElementById("plan-result").hidden = false;
      } catch (e) {
        showError(err, e.message);
      } finally {
        button.disabled = false; wait.hidden = true;
      }
    });
  }

  return {api, runForm, pollRun, stockpileForm};
})();
