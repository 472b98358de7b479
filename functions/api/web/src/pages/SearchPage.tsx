import type { JSX } from "preact";
import { useI18n } from "../i18n";

/** Not built yet: search across the case's transcripts and text in frames (docs/web.md). */
export function SearchPage(_props: { caseId: string; query: string }): JSX.Element {
  const { t } = useI18n();
  return <p class="muted">{t.notBuiltYet}</p>;
}
