// A contact form written the way @formspree/react's documentation shows, with one change:
// the `endpoint` option points at formrelay. The test page sets the two globals. The file
// input is optional: left empty, the browser sends an empty part that formrelay ignores.
import React from "react";
import { createRoot } from "react-dom/client";
import { useForm, ValidationError } from "@formspree/react";

function ContactForm() {
  const [state, handleSubmit] = useForm(window.FORMRELAY_KEY, {
    endpoint: window.FORMRELAY_ORIGIN,
  });
  if (state.succeeded) {
    return <p id="success">Thanks for your message!</p>;
  }
  return (
    <form id="contact" onSubmit={handleSubmit} noValidate>
      <label htmlFor="email">Email</label>
      <input id="email" type="email" name="email" />
      <ValidationError id="email-error" prefix="Email" field="email" errors={state.errors} />
      <label htmlFor="message">Message</label>
      <textarea id="message" name="message" />
      <label htmlFor="attachment">Attachment</label>
      <input id="attachment" type="file" name="attachment" />
      <ValidationError id="attachment-error" field="attachment" errors={state.errors} />
      <ValidationError id="form-error" errors={state.errors} />
      <button type="submit" disabled={state.submitting}>
        Send
      </button>
    </form>
  );
}

createRoot(document.getElementById("root")).render(<ContactForm />);
