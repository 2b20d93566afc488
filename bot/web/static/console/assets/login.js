// The login page: posts the credentials as JSON and goes on to the page asked for (only a console page).
import { api, $ } from "./common.js";

function nextPage() {
  const next = new URLSearchParams(location.search).get("next") || "";
  return /^\/console\/[a-z]+(\?[^#]*)?$/.test(next) && !next.startsWith("/console/login") ? next : "/console/tickets";
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const button = $("#login-submit");
  const error = $("#login-error");
  error.textContent = "";
  button.disabled = true;
  try {
    await api("/api/v1/auth/login", { method: "POST", body: { username: $("#username").value.trim(), password: $("#password").value } });
    location.href = nextPage();
  } catch (err) {
    error.textContent = err.message;
    button.disabled = false;
  }
});
