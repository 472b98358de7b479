import type { JSX } from "preact";
import { useI18n } from "../i18n";
import type { Rights } from "../session";

/** Not built yet: the findings of the case (docs/web.md). */
export function FindingsPage(_props: { caseId: string; rights: Rights }): JSX.Element {
  const { t } = useI18n();
  return <p class="muted">{t.notBuiltYet}</p>;
}
