"""The playground page at ``/``: plain HTML and inline JavaScript (no CDN, works offline)."""

PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>peftkit serve</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<style>
body{font-family:system-ui,sans-serif;max-width:44rem;margin:2rem auto;padding:0 1rem;color:#222}
textarea{width:100%;height:6rem;font:inherit}select,input,button{font:inherit;margin:.3rem 0}
.bar{background:#3f51b5;height:1rem;display:inline-block;vertical-align:middle}
table{border-collapse:collapse;width:100%}td{padding:.2rem .4rem}#err{color:#b00020}
</style></head><body>
<h1>peftkit serve</h1>
<p><label>Model <select id="model"></select></label>
<label>API key <input id="key" type="password" placeholder="only if the server asks for one"></label></p>
<textarea id="text" placeholder="Type a text to classify"></textarea>
<p><button id="go">Classify</button> <span id="err"></span></p>
<table id="out"></table>
<script>
const $ = (id) => document.getElementById(id);
$("key").value = localStorage.getItem("peftkit-key") || "";
function headers() {
  const h = {"Content-Type": "application/json"}, k = $("key").value.trim();
  localStorage.setItem("peftkit-key", k);
  if (k) h["Authorization"] = "Bearer " + k;
  return h;
}
async function models() {
  const r = await fetch("/v1/models", {headers: headers()});
  const j = await r.json();
  if (!r.ok) { $("err").textContent = j.error ? j.error.message : r.status; return; }
  $("model").innerHTML = "";
  window.labels = {};
  for (const m of j.data) {
    const o = document.createElement("option"); o.value = o.textContent = m.id; $("model").appendChild(o);
    window.labels[m.id] = m.labels;
  }
}
async function go() {
  $("err").textContent = ""; $("out").innerHTML = "";
  const model = $("model").value;
  const r = await fetch("/v1/classify", {method: "POST", headers: headers(),
    body: JSON.stringify({model: model, input: $("text").value})});
  const j = await r.json();
  if (!r.ok) { $("err").textContent = j.error.message; return; }
  const d = j.data[0], names = window.labels[model];
  const rows = d.probs.map((p, i) => [names[i], p]).sort((a, b) => b[1] - a[1]);
  for (const [name, p] of rows) {
    const tr = document.createElement("tr");
    tr.innerHTML = "<td></td><td></td><td><span class=bar></span></td>";
    tr.children[0].textContent = name; tr.children[1].textContent = p.toFixed(3);
    tr.querySelector(".bar").style.width = (p * 20) + "rem";
    $("out").appendChild(tr);
  }
}
$("go").onclick = go; $("key").onchange = models; models();
</script></body></html>
"""
